package check

import (
	"context"
	"fmt"

	"github.com/walvault/walvault/archive/repo"
)

// checkSigning says whether the segment archive_command just stored
// carries a proof that the verify keys accept: the proof that restores
// will be able to tell its objects from planted ones.
func checkSigning(ctx context.Context, rep *Report, r *repo.Repo, seg, key string) {
	const name = "signing"
	if len(r.Verify) == 0 {
		rep.add(name, Warn, "no verify key given: cannot tell whether archive_command signs what it archives",
			"run check with --verify-key (the key 'walvault keygen --signing-key' printed)")
		return
	}
	if err := r.Authenticate(ctx, key); err != nil {
		rep.add(name, Fail, fmt.Sprintf("segment %s: %v", seg, err),
			"give archive_command the signing key whose verify key restores use (signing-key: in its config file), then reload PostgreSQL")
		return
	}
	rep.add(name, OK, fmt.Sprintf("segment %s is signed with a key the verify keys accept: restores can authenticate the archive", seg), "")
}

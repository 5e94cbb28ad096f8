package repo

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/crypto"
)

// An object's proof is an Ed25519 signature, by the database host's
// signing key, over the object's key in the store, the SHA-256 of its
// plain content and its size. It travels as metadata. The key binds the
// proof to the name (a segment cannot be swapped for another, nor a
// manifest replayed under another backup), the digest to the content. The
// bucket never holds the signing key, so whoever can only write to the
// bucket cannot make a proof.

// proofMessage is what is signed: v1 for content stated by MetaSHA256.
func proofMessage(key, sha256hex string, size int64) []byte {
	return []byte("walvault-object-proof-v1\n" + key + "\n" + sha256hex + "\n" + strconv.FormatInt(size, 10) + "\n")
}

// proofMessageV2 is what is signed for content stated by its encoded
// stream's SHA-256 and its CRC-32C (MetaEncodedSHA256, MetaCRC32C). The
// version line keeps a v1 signature from being taken for a v2 one.
func proofMessageV2(key, encodedSHA256, crc32c string, size int64) []byte {
	return []byte("walvault-object-proof-v2\n" + key + "\n" + encodedSHA256 + "\n" + strconv.FormatInt(size, 10) + "\n" + crc32c + "\n")
}

// hasDigest reports that meta states a content digest (either form).
func hasDigest(meta map[string]string) bool {
	return meta[MetaSHA256] != "" || meta[MetaEncodedSHA256] != ""
}

// isHex reports that s is n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// proofMessageV3 binds a v1 or v2 message to the cluster with system
// identifier cluster: an object signed for one cluster cannot pass as one
// of another that shares the signing key.
func proofMessageV3(cluster string, inner []byte) []byte {
	return append([]byte("walvault-object-proof-v3\n"+cluster+"\n"), inner...)
}

// signedMessage is the message meta's proof signs, or false when meta
// does not state a well-formed digest and size (and cluster, when it
// names one).
func signedMessage(key string, meta map[string]string) ([]byte, int64, bool) {
	size, err := strconv.ParseInt(meta[MetaSize], 10, 64)
	if err != nil || size < 0 {
		return nil, -1, false
	}
	var msg []byte
	if enc := meta[MetaEncodedSHA256]; enc != "" {
		crc := meta[MetaCRC32C]
		if !isHex(enc, 64) || !isHex(crc, 8) || meta[MetaSHA256] != "" {
			return nil, size, false
		}
		msg = proofMessageV2(key, enc, crc, size)
	} else {
		if meta[MetaSHA256] == "" {
			return nil, size, false
		}
		msg = proofMessage(key, meta[MetaSHA256], size)
	}
	if c, ok := meta[MetaCluster]; ok {
		if !digits(c, 20) {
			return nil, size, false
		}
		msg = proofMessageV3(c, msg)
	}
	return msg, size, true
}

// prove adds the proof of key to meta, which carries the content's digest
// and size; without a signing key, meta is left without one.
func (r *Repo) prove(key string, meta map[string]string) error {
	if r.Sign == nil || meta == nil {
		return nil
	}
	if r.Cluster == "" {
		return fmt.Errorf("internal error: %s would be signed without the system identifier of its cluster", key)
	}
	meta[MetaCluster] = r.Cluster
	msg, _, ok := signedMessage(key, meta)
	if !ok {
		return fmt.Errorf("internal error: %s has no content digest and size to sign", key)
	}
	meta[MetaProof] = base64.StdEncoding.EncodeToString(r.Sign.Sign(msg))
	meta[MetaSigner] = r.Sign.ID()
	return nil
}

// errNoVerifyKey: the reader was asked to check proofs without keys.
var errNoVerifyKey = errors.New("no verify key is configured: give --verify-key (printed by walvault keygen) or, for an archive written before walvault signed objects, --allow-unsigned")

// checkProof verifies the proof in meta for key and returns the content
// size it vouches for. With AllowUnsigned, nothing is required: size is -1
// when the metadata does not state one.
func (r *Repo) checkProof(key string, meta map[string]string) (int64, error) {
	size, serr := strconv.ParseInt(meta[MetaSize], 10, 64)
	if serr != nil || size < 0 {
		size = -1
	}
	if r.AllowUnsigned {
		return size, nil
	}
	if len(r.verifyKeys()) == 0 {
		return 0, fmt.Errorf("%w: %w", crypto.ErrBadProof, errNoVerifyKey)
	}
	proof, signer := meta[MetaProof], meta[MetaSigner]
	if proof == "" || signer == "" {
		return 0, fmt.Errorf("%w: it carries no proof (%s metadata): it was not written by a walvault holding the signing key; if the archive was written before walvault signed objects, read it with --allow-unsigned", crypto.ErrBadProof, MetaProof)
	}
	sig, err := base64.StdEncoding.DecodeString(proof)
	msg, _, ok := signedMessage(key, meta)
	if err != nil || !ok {
		return 0, fmt.Errorf("%w: its proof metadata is malformed", crypto.ErrBadProof)
	}
	if err := crypto.Check(r.verifyKeys(), signer, msg, sig); err != nil {
		return 0, err
	}
	if c, ok := meta[MetaCluster]; ok && r.Cluster != "" && c != r.Cluster {
		return 0, fmt.Errorf("%w: it was written for the cluster with system identifier %s, and this archive belongs to %s: an object copied from another cluster's archive", crypto.ErrBadProof, c, r.Cluster)
	}
	return size, nil
}

// verifyKeys are the keys proofs are checked with: the configured verify
// keys, and a writer's own (it may check what it wrote itself without a
// verify key configured).
func (r *Repo) verifyKeys() []crypto.VerifyKey {
	if r.Sign == nil {
		return r.Verify
	}
	return append(append([]crypto.VerifyKey(nil), r.Verify...), r.Sign.Verify())
}

// contentMeta is the metadata that states a content's digest and size.
func contentMeta(sum string, size int64) map[string]string {
	return map[string]string{MetaSHA256: sum, MetaSize: strconv.FormatInt(size, 10)}
}

// Authenticate checks the proof of the object at key from its metadata
// alone, without reading it: check uses it to confirm that archive_command
// signs with the key the verify keys belong to.
func (r *Repo) Authenticate(ctx context.Context, key string) error {
	info, err := r.Store.Stat(ctx, key)
	if err != nil {
		return archive.StoreErr(fmt.Errorf("%s: reading %s: %w", r.Store, key, err))
	}
	strict := *r
	strict.AllowUnsigned = false
	if _, err := strict.checkProof(key, info.Metadata); err != nil {
		return fmt.Errorf("%s in %s: %w", key, r.Store, err)
	}
	return nil
}

package archive

// Progress receives the byte counts of a long transfer (backup-push,
// restore). The CLI draws it (a bar on a terminal, log lines elsewhere);
// the domain only counts.
type Progress interface {
	// AddRead counts bytes of data read (backup) or written (restore).
	AddRead(n int64)
	// AddStored counts bytes sent to the store.
	AddStored(n int64)
	// Done ends the report.
	Done()
}

// NewProgress starts a Progress for a transfer of total bytes; what names
// it ("backup", "restore").
type NewProgress func(what string, total int64) Progress

// Start calls f, or returns a Progress that ignores everything when f is
// nil.
func (f NewProgress) Start(what string, total int64) Progress {
	if f == nil {
		return noProgress{}
	}
	return f(what, total)
}

type noProgress struct{}

func (noProgress) AddRead(int64)   {}
func (noProgress) AddStored(int64) {}
func (noProgress) Done()           {}

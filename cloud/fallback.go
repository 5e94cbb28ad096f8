package cloud

import (
	"context"
	"errors"
	"io"
	"sync"
)

// A store with fallbacks reads from its primary store first and, for an
// object the primary does not have, from each fallback in turn (restore
// --fallback-store: a second store that holds a copy of the archive). A
// listing is the union of all of them, the primary's entry winning for a
// key they share. Writes and deletes go to the primary alone. Whoever reads
// through it authenticates what it reads as from any store (the fallbacks
// hold copies signed by the same key); an object the primary holds
// damaged is read again from a fallback by the reader, which knows it is
// damaged (FallbackStores).

// FallbackNote is told of every object read from a fallback store, and
// why (the primary's error).
type FallbackNote func(key string, from Store, why error)

type fallbackStore struct {
	Store
	others []Store
	note   FallbackNote
}

// WithFallback decorates primary with fallback stores. note, when set, is
// told of each object read from one.
func WithFallback(primary Store, others []Store, note FallbackNote) Store {
	if len(others) == 0 {
		return primary
	}
	return &fallbackStore{Store: primary, others: others, note: note}
}

// FallbackStores are the fallbacks of a store made by WithFallback (nil
// for another store), and the note to give them.
func FallbackStores(s Store) ([]Store, FallbackNote) {
	if f, ok := s.(*fallbackStore); ok {
		note := f.note
		if note == nil {
			note = func(string, Store, error) {}
		}
		return f.others, note
	}
	return nil, nil
}

func (f *fallbackStore) Unwrap() Store { return f.Store }

func (f *fallbackStore) Close() error {
	err := Close(f.Store)
	for _, o := range f.others {
		if cerr := Close(o); err == nil {
			err = cerr
		}
	}
	return err
}

func (f *fallbackStore) noted(key string, from Store, why error) {
	if f.note != nil {
		f.note(key, from, why)
	}
}

func (f *fallbackStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	rc, info, err := f.Store.Get(ctx, key)
	if !errors.Is(err, ErrNotFound) {
		return rc, info, err
	}
	for _, o := range f.others {
		if rc, info, oerr := o.Get(ctx, key); oerr == nil {
			f.noted(key, o, err)
			return rc, info, nil
		} else if !errors.Is(oerr, ErrNotFound) {
			return nil, ObjectInfo{}, oerr
		}
	}
	return nil, ObjectInfo{}, err
}

func (f *fallbackStore) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := f.Store.GetRange(ctx, key, off, n)
	if !errors.Is(err, ErrNotFound) {
		return rc, err
	}
	for _, o := range f.others {
		if rc, oerr := o.GetRange(ctx, key, off, n); oerr == nil {
			f.noted(key, o, err)
			return rc, nil
		} else if !errors.Is(oerr, ErrNotFound) {
			return nil, oerr
		}
	}
	return nil, err
}

func (f *fallbackStore) Load(ctx context.Context, key string, fn func(io.Reader, ObjectInfo) error) error {
	err := f.Store.Load(ctx, key, fn)
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	for _, o := range f.others {
		oerr := o.Load(ctx, key, fn)
		if oerr == nil {
			f.noted(key, o, err)
			return nil
		}
		if !errors.Is(oerr, ErrNotFound) {
			return oerr
		}
	}
	return err
}

func (f *fallbackStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	info, err := f.Store.Stat(ctx, key)
	if !errors.Is(err, ErrNotFound) {
		return info, err
	}
	for _, o := range f.others {
		if info, oerr := o.Stat(ctx, key); oerr == nil {
			return info, nil
		} else if !errors.Is(oerr, ErrNotFound) {
			return ObjectInfo{}, oerr
		}
	}
	return ObjectInfo{}, err
}

// List lists every store at once and hands fn their union in key order,
// merged as the listings stream (each store lists in key order): memory
// stays bounded whatever the number of keys. A key in several stores is
// handed once, with the primary's entry (or the first fallback's that has
// it). A fallback that has nothing under prefix is no error.
func (f *fallbackStore) List(ctx context.Context, prefix string, opts ListOptions, fn func(ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	stores := append([]Store{f.Store}, f.others...)
	cs := make([]*listCursor, len(stores))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the Wait: the listings stop
	for i, s := range stores {
		cs[i] = &listCursor{ch: make(chan listEntry, 64)}
		wg.Go(func() { cs[i].run(ctx, s, prefix, opts) })
	}
	for i := range cs {
		if err := cs[i].advance(i == 0); err != nil {
			return err
		}
	}
	for {
		low := -1
		for i, c := range cs {
			if c.ok && (low < 0 || c.cur.Key < cs[low].cur.Key) {
				low = i
			}
		}
		if low < 0 {
			return nil
		}
		o := cs[low].cur
		for i, c := range cs {
			if c.ok && c.cur.Key == o.Key {
				if err := c.advance(i == 0); err != nil {
					return err
				}
			}
		}
		if err := fn(o); err != nil {
			return err
		}
	}
}

type listEntry struct {
	o   ObjectInfo
	err error
}

// A listCursor is one store's listing, streamed through ch, and the entry
// it is at.
type listCursor struct {
	ch  chan listEntry
	cur ObjectInfo
	ok  bool
}

func (c *listCursor) run(ctx context.Context, s Store, prefix string, opts ListOptions) {
	defer close(c.ch)
	err := s.List(ctx, prefix, opts, func(o ObjectInfo) error {
		select {
		case c.ch <- listEntry{o: o}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		select {
		case c.ch <- listEntry{err: err}:
		case <-ctx.Done():
		}
	}
}

// advance moves to the next entry; at the end, ok is false. A fallback's
// ErrNotFound is an empty listing; any other error is the listing's.
func (c *listCursor) advance(primary bool) error {
	e, more := <-c.ch
	c.ok = more && e.err == nil
	c.cur = e.o
	if e.err != nil && (primary || !errors.Is(e.err, ErrNotFound)) {
		return e.err
	}
	return nil
}

package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// allocated runs fn and returns the bytes it allocated (cumulative, so a
// buffer allocated and dropped counts).
func allocated(fn func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// zstdFrame builds a zstd frame by hand: the header fields a hostile
// writer chooses, then RLE blocks of 128 KiB (3 bytes of input each) and
// an empty last block.
func zstdFrame(windowDescriptor byte, singleSegment bool, contentSize uint64, rleBlocks int) []byte {
	b := append([]byte(nil), zstdMagic...)
	fhd := byte(0)
	var fcs []byte
	if contentSize > 0 {
		fhd |= 3 << 6 // 8-byte Frame_Content_Size
		fcs = binary.LittleEndian.AppendUint64(nil, contentSize)
	}
	if singleSegment {
		fhd |= 1 << 5
	}
	b = append(b, fhd)
	if !singleSegment {
		b = append(b, windowDescriptor)
	}
	b = append(b, fcs...)
	block := func(last bool, typ, size uint32) {
		h := size<<3 | typ<<1
		if last {
			h |= 1
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16))
	}
	for range rleBlocks {
		block(false, 1, 128<<10) // RLE: one byte, repeated 128 KiB times
		b = append(b, 'x')
	}
	block(true, 0, 0) // an empty raw block ends the frame
	return b
}

// readHostile decodes stored through NewReader and reports the error and
// the bytes allocated while doing so.
func readHostile(t *testing.T, stored []byte) (uint64, error) {
	t.Helper()
	var err error
	n := allocated(func() {
		var r io.ReadCloser
		if r, err = NewReader(bytes.NewReader(stored), nil); err != nil {
			return
		}
		defer r.Close()
		_, err = io.Copy(io.Discard, r)
	})
	return n, err
}

// A zstd frame declaring a window larger than what walvault writes is
// refused as corrupt before the decoder sizes its buffers by it: the
// 512 MiB window the format allows used to take that much memory.
func TestZstdHostileHeadersStayBounded(t *testing.T) {
	const maxAlloc = 32 << 20
	tests := []struct {
		name  string
		frame []byte
		why   string
	}{
		// Window_Descriptor 19<<3: 2^(10+19) = 512 MiB.
		{"512 MiB window", zstdFrame(19<<3, false, 0, 64), "window"},
		// 16 MiB: just above the writer's 8 MiB.
		{"16 MiB window", zstdFrame(14<<3, false, 0, 4), "window"},
		// Single segment: the window is the declared content size.
		{"single segment of 500 MiB", zstdFrame(0, true, 500<<20, 64), "size"},
		{"single segment of 1 TiB", zstdFrame(0, true, 1<<40, 1), "size"},
		// An acceptable window with a content size it never delivers:
		// streamed within the window, then refused at the frame's end.
		{"1 TiB content size in an 8 MiB window", zstdFrame(13<<3, false, 1<<40, 100), "size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := readHostile(t, tt.frame)
			t.Logf("%v; %d KiB allocated", err, n>>10)
			if n > maxAlloc {
				t.Errorf("decoding a %d-byte frame allocated %d MiB (limit %d MiB)", len(tt.frame), n>>20, maxAlloc>>20)
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("got %v, want ErrCorrupt about the %s", err, tt.why)
			}
		})
	}
}

// The bound is the writer's window, not less: a frame at exactly 8 MiB, as
// NewWriter writes them, decodes.
func TestZstdWriterWindowIsAccepted(t *testing.T) {
	frame := zstdFrame(13<<3, false, 0, 100) // 2^23 = 8 MiB
	r, err := NewReader(bytes.NewReader(frame), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	if err != nil || n != 100*128<<10 {
		t.Fatalf("got %d bytes, %v", n, err)
	}
}

// Every level NewWriter offers declares a window the reader accepts; a
// library upgrade that raised its default would fail here, not in a
// restore.
func TestZstdWriterWindowAtEveryLevel(t *testing.T) {
	// More than a window, so none is shrunk to fit; one level for each
	// speed klauspost maps the zstd levels to.
	plain := sample(t, 12<<20)
	for _, level := range []int{0, 1, 3, 6, 10, 22} {
		t.Run(fmt.Sprint(level), func(t *testing.T) {
			stored := encode(t, Settings{Compression: Zstd, Level: level, Concurrency: 1}, plain)
			var h zstd.Header
			if err := h.Decode(stored); err != nil {
				t.Fatal(err)
			}
			if h.WindowSize > MaxZstdWindow || h.SingleSegment && h.FrameContentSize > MaxZstdWindow {
				t.Fatalf("level %d writes a %d-byte window (single segment %v, content %d); readers accept %d", level, h.WindowSize, h.SingleSegment, h.FrameContentSize, MaxZstdWindow)
			}
			got, err := decode(stored, nil)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("round trip: %d bytes, %v", len(got), err)
			}
		})
	}
}

// lz4Frame builds an lz4 frame with the given block-size code (4: 64 KiB
// ... 7: 4 MiB) and a declared content size, holding n uncompressed
// blocks of the full block size.
func lz4Frame(bsCode byte, contentSize uint64, n int) []byte {
	b := append([]byte(nil), lz4Magic...)
	flg := byte(1<<6 | 1<<5 | 1<<3) // version 1, independent blocks, content size
	bd := bsCode << 4
	desc := []byte{flg, bd}
	desc = binary.LittleEndian.AppendUint64(desc, contentSize)
	b = append(b, desc...)
	b = append(b, lz4HeaderChecksum(desc))
	size := 1 << (8 + 2*int(bsCode))
	for range n {
		b = binary.LittleEndian.AppendUint32(b, uint32(size)|1<<31) // uncompressed block
		b = append(b, bytes.Repeat([]byte{'x'}, size)...)
	}
	return binary.LittleEndian.AppendUint32(b, 0) // end mark
}

// lz4HeaderChecksum is the descriptor's check byte: the second byte of
// xxh32 of the descriptor, seed 0.
func lz4HeaderChecksum(desc []byte) byte {
	return byte(xxh32(desc) >> 8)
}

// xxh32 is XXH32 with seed 0, enough for an lz4 descriptor (under 16
// bytes).
func xxh32(b []byte) uint32 {
	const p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
	h := uint32(p5) + uint32(len(b))
	for len(b) >= 4 {
		h += binary.LittleEndian.Uint32(b) * p3
		h = (h<<17 | h>>15) * p4
		b = b[4:]
	}
	for _, c := range b {
		h += uint32(c) * p5
		h = (h<<11 | h>>21) * p1
	}
	h ^= h >> 15
	h *= p2
	h ^= h >> 13
	h *= p3
	h ^= h >> 16
	return h
}

// lz4 needs no window option: the reader holds buffers of the frame's
// block size (4 MiB at most), whatever content size the frame declares.
func TestLZ4MemoryIsBoundedByBlockSize(t *testing.T) {
	frame := lz4Frame(7, 1<<40, 3) // 4 MiB blocks, 1 TiB declared, 12 MiB given
	n, err := readHostile(t, frame)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a frame shorter than its declared size: got %v, want ErrCorrupt", err)
	}
	t.Logf("%v; %d KiB allocated", err, n>>10)
	if n > 32<<20 {
		t.Fatalf("decoding allocated %d MiB", n>>20)
	}
	// The same frame with its true size decodes: the hand-built frame is
	// well formed, so the error above is the size.
	good := lz4Frame(7, 3*4<<20, 3)
	if got, err := decode(good, nil); err != nil || len(got) != 3*4<<20 {
		t.Fatalf("well-formed frame: %d bytes, %v", len(got), err)
	}
	// After a frame, the reader also takes a legacy frame, whose blocks
	// are 8 MiB: still bounded.
	legacy := append(lz4Frame(4, 64<<10, 1), 0x02, 0x21, 0x4c, 0x18)
	legacy = binary.LittleEndian.AppendUint32(legacy, 8<<20) // a block claiming 8 MiB, then nothing
	n, err = readHostile(t, legacy)
	t.Logf("legacy: %v; %d KiB allocated", err, n>>10)
	if !errors.Is(err, ErrCorrupt) || n > 32<<20 {
		t.Fatalf("legacy frame: %v, %d MiB allocated", err, n>>20)
	}
}

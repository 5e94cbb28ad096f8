//go:build !unix

package wal

import (
	"errors"
	"os"
)

func mapFile(*os.File, int64, int64) ([]byte, func(), error) {
	return nil, nil, errors.New("not mappable")
}

func faultSafe(_ string, fn func() error) error { return fn() }

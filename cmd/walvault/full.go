//go:build !walvault_front

package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// This is walvault-full (or a complete walvault built with plain go build):
// it runs everything itself. See front.go.

const frontBuild = false

var frontCommands = map[string]bool{}

var errHandOver = errors.New("for walvault-full")

func handOver(err error) error { return err }

func frontRuns(*cli.App, []string) bool { return true }

func frontStores(*cli.Context) error { return nil }

func execFull([]string) error { return errors.New("walvault-full runs everything itself") }

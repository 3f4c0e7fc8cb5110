//go:build linux && cgo

package main

// Linking cgo compiles nsenter.c, whose constructor is the program.

import "C"

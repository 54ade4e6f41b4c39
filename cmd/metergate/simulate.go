package main

import (
	"context"
	"errors"
)

// simulateCmd is replaced by the simulator's implementation.
func simulateCmd(ctx context.Context, args []string) error { return errors.New("not yet") }

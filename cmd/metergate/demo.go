package main

import (
	"context"
	"errors"
)

func demoCmd(ctx context.Context, args []string) error { return errors.New("not yet") }

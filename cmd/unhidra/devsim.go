package main

import (
	"context"
	"errors"
)

func runDevsim(ctx context.Context, e env) error { return errors.New("not available yet") }

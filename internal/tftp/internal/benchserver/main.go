// Command benchserver runs internal/tftp alone, serving a directory, so that
// scripts/bench-tftp.sh can time it against dnsmasq's TFTP on the same file.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/provisiond/provisiond/internal/tftp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6969", "UDP address to serve on")
	root := flag.String("root", "", "directory to serve")
	verbose := flag.Bool("v", false, "log each transfer")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// The bench's concurrent clients all fetch from 127.0.0.1; dnsmasq,
	// which it compares against, has no per-client cap.
	srv, err := tftp.New(tftp.Config{Root: *root, Logger: log, MaxPerClient: tftp.DefaultMaxTransfers})
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.ListenAndServe(ctx, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
}

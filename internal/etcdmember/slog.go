package etcdmember

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap/zapcore"
)

// slogCore is a zapcore.Core that hands etcd's log entries, warnings and
// worse (its info level is a chatty play-by-play of raft), to provisiond's
// slog logger, so that they share one format and destination.
type slogCore struct {
	log   *slog.Logger
	attrs []slog.Attr // from With
}

func (c slogCore) Enabled(l zapcore.Level) bool {
	return l >= zapcore.WarnLevel && c.log.Enabled(context.Background(), slogLevel(l))
}

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{log: c.log, attrs: append(slices.Clip(c.attrs), toAttrs(fields)...)}
}

// routine says etcd logs msg at every start and asks nothing of the
// operator of an embedded member (etcd's auth, whose token it is about, is
// off): dropped, so that a warning means something.
func routine(msg string) bool {
	switch msg {
	case "Running http and grpc server on single port. This is not recommended for production.",
		"simple token is not cryptographically signed":
		return true
	}
	return false
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) && !routine(e.Message) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	r.AddAttrs(c.attrs...)
	r.AddAttrs(toAttrs(fields)...)
	return c.log.Handler().Handle(context.Background(), r)
}

func (slogCore) Sync() error { return nil }

// slogLevel maps the levels Enabled lets through: warnings and worse.
func slogLevel(l zapcore.Level) slog.Level {
	if l >= zapcore.ErrorLevel {
		return slog.LevelError
	}
	return slog.LevelWarn
}

// toAttrs encodes zap fields with zap's own map encoder, in field order.
func toAttrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	var out []slog.Attr
	for _, f := range fields {
		f.AddTo(enc)
		if v, ok := enc.Fields[f.Key]; ok {
			out = append(out, slog.Any(f.Key, v))
		}
	}
	return out
}

package cri

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Interceptors returns the grpc server options that give every RPC one place
// for request logging, timing, panic recovery and error-kind mapping.
func Interceptors(log *slog.Logger) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
			start := time.Now()
			defer func() {
				if r := recover(); r != nil {
					log.Error("panic in RPC", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
					err = status.Errorf(codes.Internal, "%s: internal error: %v", info.FullMethod, r)
				}
				logRPC(ctx, log, info.FullMethod, start, err)
			}()
			resp, err = h(ctx, req)
			return resp, toGRPC(err)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
			start := time.Now()
			defer func() {
				if r := recover(); r != nil {
					log.Error("panic in RPC", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
					err = status.Error(codes.Internal, fmt.Sprintf("%s: internal error: %v", info.FullMethod, r))
				}
				logRPC(ss.Context(), log, info.FullMethod, start, err)
			}()
			return toGRPC(h(srv, ss))
		}),
	}
}

func logRPC(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	d := time.Since(start)
	if err != nil {
		code := status.Code(err)
		lvl := slog.LevelWarn
		if code == codes.Unknown || code == codes.Internal {
			lvl = slog.LevelError
		}
		log.Log(ctx, lvl, "rpc failed", "method", method, "code", code.String(), "err", err, "duration", d)
		return
	}
	log.Debug("rpc", "method", method, "duration", d)
}

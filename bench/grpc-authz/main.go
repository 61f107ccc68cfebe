// An Envoy ext_authz gRPC authorizer that allows every request, for bench/ext_authz_client.sh:
// the cheapest answer a gRPC authorizer can give, so the run measures Envoy's side.
//
//	grpc-authz 127.0.0.1:PORT
package main

import (
	"context"
	"log"
	"net"
	"os"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

type allowAll struct{ authv3.UnimplementedAuthorizationServer }

func (allowAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &status.Status{Code: 0}}, nil
}

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: grpc-authz ADDR")
	}
	l, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, allowAll{})
	log.Fatal(s.Serve(l))
}

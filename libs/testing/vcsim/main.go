// The vCenter simulator the VMware adapter's tests talk to: govmomi's simulator (Debian
// golang-github-vmware-govmomi-dev) with its default VPX inventory, served over TLS on a
// free loopback port with the certificate and key named on the command line (Go's built-in test
// certificate is RSA-1024, which OpenSSL refuses). It prints one JSON line (url) and runs until killed.
package main

import (
	"crypto/tls"
	"encoding/json"
	"os"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		panic(err)
	}
	cert, err := tls.LoadX509KeyPair(os.Args[1], os.Args[2])
	if err != nil {
		panic(err)
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	server := model.Service.NewServer()
	defer server.Close()
	json.NewEncoder(os.Stdout).Encode(map[string]string{"url": server.URL.String()})
	select {}
}

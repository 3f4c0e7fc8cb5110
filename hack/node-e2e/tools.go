//go:build tools

// Package nodee2e pins the Kubernetes binaries that hack/node-e2e.sh builds:
// k8s.io/kubernetes cannot be installed with "go install" (its go.mod
// replaces the staging modules by relative paths), so this module requires
// it and replaces each staging module by its published twin instead.
package nodee2e

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/test/e2e_node"
	_ "k8s.io/kubernetes/test/images/agnhost"
)

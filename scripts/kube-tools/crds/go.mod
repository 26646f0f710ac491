// Pins the Gateway API release whose CRDs pillion-e2e's Kubernetes harness applies: the module
// carries them under config/crd/. A module of its own so that its requirements stay out of the
// kube-apiserver build in ../go.mod. No code imports it, so `go mod tidy` would drop the
// requirement: bump it with `go get sigs.k8s.io/gateway-api@VERSION` here instead.
module pillion.dev/kube-tools/crds

go 1.26.0

require sigs.k8s.io/gateway-api v1.6.3

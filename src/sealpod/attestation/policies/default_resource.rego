package policy

import rego.v1

# sealpod's default resource policy: a resource goes only to a TEE whose attestation result is affirming
# (recognised enclave, acceptable hardware, sound configuration), and never to trustee's `sample` TEE.

default allow := false

allow if {
	data.plugin == "resource"
	input.submods.cpu0["ear.status"] == "affirming"
	not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}

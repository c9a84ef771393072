package policy

import rego.v1

# sealpod's default attestation policy for SGX enclaves (AR4SI trust vector, as trustee's default_cpu).
# The enclave is recognised when its mr_enclave, mr_signer and isv_prod_id are among the reference values and its
# isv_svn is at least the lowest registered one; the hardware when the TCB status is acceptable (policy data
# `sgx.acceptable_tcb_statuses`) and the enclave is not a DEBUG one.

default executables := 33

default hardware := 97

default configuration := 36

default file_system := 0

default instance_identity := 0

default runtime_opaque := 0

default storage_opaque := 0

default sourced_data := 0

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"file-system": file_system,
	"instance-identity": instance_identity,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": storage_opaque,
	"sourced-data": sourced_data,
}

executables := 3 if {
	input.sgx
	input.sgx.body.mr_enclave in query_reference_value("mr_enclave")
	input.sgx.body.mr_signer in query_reference_value("mr_signer")
	input.sgx.isv_prod_id in query_reference_value("isv_prod_id")
	input.sgx.isv_svn >= min(query_reference_value("isv_svn"))
}

hardware := 2 if {
	input.sgx
	input.sgx.tcb_status in data.sgx.acceptable_tcb_statuses
	input.sgx.debug == false
}

configuration := 2 if {
	input.sgx
	input.sgx.debug == false
}

# A DEBUG enclave's memory is open to the host: contraindicated whatever else holds.
configuration := 96 if {
	input.sgx
	input.sgx.debug == true
}

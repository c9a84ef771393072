"""What runs in the enclave before the workload: KBS resources, and the secure pull pipeline."""

"""Intel SGX DCAP: quote parsing, the PCK certificate's SGX extension, collateral, and the verifier."""

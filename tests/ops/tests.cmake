# The same ops tests with the dispatch forced down to AVX2 (and scalar), so the lower paths
# run through matmul on machines whose best path is AVX-512. Skipped paths the CPU lacks
# simply fall back to the best available one.
if(TARGET test_ops)
  add_test(NAME ops_avx2 COMMAND test_ops)
  set_tests_properties(ops_avx2 PROPERTIES ENVIRONMENT "LOKAL_ISA=avx2" TIMEOUT 600)
  add_test(NAME ops_scalar COMMAND test_ops --gtest_filter=Matmul.*:Attention*:Ops.*:CpuFeatures.*)
  set_tests_properties(ops_scalar PROPERTIES ENVIRONMENT "LOKAL_ISA=scalar" TIMEOUT 600)
endif()
# And with AVX512_BF16 not used where the CPU has it (LOKAL_BF16_DOT=0): the BF16 weights and
# the BF16 KV cache's keys through their fma pairs, as on an AVX-512 CPU without the instruction.
if(TARGET test_ops)
  add_test(NAME ops_bf16_fma COMMAND test_ops --gtest_filter=Attention*:Kernels.*Bf16*:Matmul.*)
  set_tests_properties(ops_bf16_fma PROPERTIES ENVIRONMENT "LOKAL_BF16_DOT=0" TIMEOUT 600)
endif()

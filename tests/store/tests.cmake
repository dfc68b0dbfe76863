# The store commands as a small binary of their own, driven by tests/store/cli_test.cpp
# (so the CLI tests do not wait on the engine layers).
if(TARGET test_store)
  add_executable(lokal_store_cli ${CMAKE_SOURCE_DIR}/src/cli/cmd_store.cpp
                                 ${CMAKE_CURRENT_SOURCE_DIR}/store/cli_bin/main.cpp)
  target_link_libraries(lokal_store_cli PRIVATE lokal_store CLI11::CLI11 nlohmann_json::nlohmann_json)
  add_dependencies(test_store lokal_store_cli)
  target_compile_definitions(test_store PRIVATE LOKAL_STORE_CLI="$<TARGET_FILE:lokal_store_cli>")
endif()

# The store's parsers of untrusted input (fuzz/store_fuzz.cpp: manifests, Modelfiles and
# their parameters, names, digests, safetensors headers): the corpus in tests/store/malformed
# replayed, then 15 s of random mutations of it. The libFuzzer build with ASan and UBSan:
# fuzz/build_libfuzzer.sh.
if(TARGET lokal_store)
  add_executable(store_fuzz_smoke ${CMAKE_SOURCE_DIR}/fuzz/store_fuzz.cpp)
  target_compile_definitions(store_fuzz_smoke PRIVATE LOKAL_FUZZ_STANDALONE)
  target_link_libraries(store_fuzz_smoke PRIVATE lokal_store)
  add_test(NAME store_fuzz_smoke
           COMMAND store_fuzz_smoke ${CMAKE_CURRENT_LIST_DIR}/malformed --mutate 15)
  set_tests_properties(store_fuzz_smoke PROPERTIES TIMEOUT 120)
endif()

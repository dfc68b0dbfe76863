# Structured output's parsers of untrusted input (fuzz/json_schema_fuzz.cpp: JSON schemas
# from requests, compiled, and documents matched against them): the corpus in
# tests/engine/malformed_schemas (each file: schema, NUL, document) replayed, then 15 s of
# random mutations of it.
#  - json_schema_fuzz_smoke (any compiler, registered with ctest);
#  - json_schema_fuzz (LOKAL_LIBFUZZER=ON, clang; defined in the top-level CMakeLists.txt):
#    the libFuzzer binary, built by fuzz/build_libfuzzer.sh with ASan and UBSan, e.g.
#    build-fuzz/bin/json_schema_fuzz -max_len=4096 -timeout=10 /tmp/schema-corpus
#        tests/engine/malformed_schemas
if(TARGET lokal_engine)
  add_executable(json_schema_fuzz_smoke ${CMAKE_SOURCE_DIR}/fuzz/json_schema_fuzz.cpp)
  target_compile_definitions(json_schema_fuzz_smoke PRIVATE LOKAL_FUZZ_STANDALONE)
  target_link_libraries(json_schema_fuzz_smoke PRIVATE lokal_engine nlohmann_json::nlohmann_json)
  add_test(NAME json_schema_fuzz_smoke
           COMMAND json_schema_fuzz_smoke ${CMAKE_CURRENT_LIST_DIR}/malformed_schemas --mutate 15)
  set_tests_properties(json_schema_fuzz_smoke PROPERTIES TIMEOUT 120)

endif()

# The built `lokal serve` binary over real HTTP (curl), including SIGTERM draining.
find_program(CURL_PROGRAM curl)
if(TARGET test_server AND CURL_PROGRAM)
  add_test(NAME server_binary
           COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/serve_smoke.sh $<TARGET_FILE:lokal> ${LOKAL_SHARED_DEFAULT})
  set_tests_properties(server_binary PROPERTIES TIMEOUT 60)
endif()

# The npm openai and ollama clients (installed by scripts/setup.sh into tests/server/npm).
find_program(NPM_PROGRAM npm)
if(TARGET test_server AND NPM_PROGRAM AND EXISTS ${CMAKE_CURRENT_LIST_DIR}/npm/node_modules/openai)
  add_test(NAME server_npm_clients COMMAND ${NPM_PROGRAM} test WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR}/npm)
  # Also the chat page in headless chromium (skipped without /usr/bin/chromium or
  # puppeteer-core).
  set_tests_properties(server_npm_clients PROPERTIES TIMEOUT 120
    ENVIRONMENT "LOKAL_BIN=$<TARGET_FILE:lokal>;LOKAL_SHARED=${LOKAL_SHARED_DEFAULT}")
endif()

# Bounded load test: 64 keep-alive clients, 10,000 short requests against the binary.
if(TARGET test_server)
  add_executable(test_server_load ${CMAKE_CURRENT_LIST_DIR}/load/load_test.cpp)
  target_link_libraries(test_server_load PRIVATE PkgConfig::HTTPLIB nlohmann_json::nlohmann_json
                        Threads::Threads)
  add_dependencies(test_server_load lokal)
  add_test(NAME server_load
           COMMAND test_server_load $<TARGET_FILE:lokal> ${LOKAL_SHARED_DEFAULT})
  set_tests_properties(server_load PROPERTIES TIMEOUT 120)
endif()

# Hostile requests (fuzz/http_fuzz.cpp): the corpus in tests/server/malformed replayed against
# an in-process server, then 20 s of random mutations of it; any 5xx but 503, an error without a JSON body, a broken stream or a
# server that stops answering fails. The libFuzzer build of the same harness, with ASan and
# UBSan over the whole server: fuzz/build_libfuzzer.sh.
if(TARGET lokal_server)
  add_executable(http_fuzz_smoke ${CMAKE_SOURCE_DIR}/fuzz/http_fuzz.cpp)
  target_compile_definitions(http_fuzz_smoke PRIVATE LOKAL_FUZZ_STANDALONE
                             LOKAL_SHARED_DEFAULT="${LOKAL_SHARED_DEFAULT}")
  target_include_directories(http_fuzz_smoke PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(http_fuzz_smoke PRIVATE lokal_server PkgConfig::HTTPLIB
                        nlohmann_json::nlohmann_json)
  add_test(NAME server_fuzz_smoke
           COMMAND http_fuzz_smoke ${CMAKE_CURRENT_LIST_DIR}/malformed --mutate 20)
  set_tests_properties(server_fuzz_smoke PROPERTIES TIMEOUT 300)
endif()

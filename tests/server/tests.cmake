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
  set_tests_properties(server_npm_clients PROPERTIES TIMEOUT 90
    ENVIRONMENT "LOKAL_BIN=$<TARGET_FILE:lokal>;LOKAL_SHARED=${LOKAL_SHARED_DEFAULT}")
endif()

# The store commands as a small binary of their own, driven by tests/store/cli_test.cpp
# (so the CLI tests do not wait on the engine layers).
if(TARGET test_store)
  add_executable(lokal_store_cli ${CMAKE_SOURCE_DIR}/src/cli/cmd_store.cpp
                                 ${CMAKE_CURRENT_SOURCE_DIR}/store/cli_bin/main.cpp)
  target_link_libraries(lokal_store_cli PRIVATE lokal_store CLI11::CLI11 nlohmann_json::nlohmann_json)
  add_dependencies(test_store lokal_store_cli)
  target_compile_definitions(test_store PRIVATE LOKAL_STORE_CLI="$<TARGET_FILE:lokal_store_cli>")
endif()

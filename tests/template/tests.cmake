# Fuzzing of the template engine (fuzz/template_fuzz.cpp).
#  - template_fuzz_smoke (any compiler, registered with ctest): replays the malformed-template
#    corpus and the shared chat templates through the fuzz entry point.
#  - template_fuzz (clang only): the libFuzzer binary, with the engine compiled in under
#    ASan + UBSan, e.g.  ./build/bin/template_fuzz -max_len=4096 tests/template/malformed
set(LOKAL_TEMPLATE_FUZZ_SRC ${CMAKE_SOURCE_DIR}/fuzz/template_fuzz.cpp)
if(EXISTS ${LOKAL_TEMPLATE_FUZZ_SRC} AND TARGET lokal_template)
  add_executable(template_fuzz_smoke ${LOKAL_TEMPLATE_FUZZ_SRC})
  target_compile_definitions(template_fuzz_smoke PRIVATE LOKAL_FUZZ_STANDALONE)
  target_link_libraries(template_fuzz_smoke PRIVATE lokal_template nlohmann_json::nlohmann_json)
  add_test(NAME template_fuzz_smoke
           COMMAND template_fuzz_smoke ${CMAKE_CURRENT_SOURCE_DIR}/template/malformed
                   ${LOKAL_SHARED_DEFAULT}/templates)
  set_tests_properties(template_fuzz_smoke PROPERTIES TIMEOUT 300)

  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    file(GLOB LOKAL_TEMPLATE_SRCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/template/*.cpp)
    add_executable(template_fuzz ${LOKAL_TEMPLATE_FUZZ_SRC} ${LOKAL_TEMPLATE_SRCS})
    target_include_directories(template_fuzz PRIVATE ${CMAKE_SOURCE_DIR}/src)
    target_compile_options(template_fuzz PRIVATE -g -fsanitize=fuzzer,address,undefined)
    target_link_options(template_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(template_fuzz PRIVATE nlohmann_json::nlohmann_json)
    set_target_properties(template_fuzz PROPERTIES EXCLUDE_FROM_ALL TRUE)
  endif()
endif()

# Extra GGUF test targets, included from tests/CMakeLists.txt:
#  - test_gguf_asan / gguf_asan: the reader, writer and their tests under ASan + UBSan;
#  - gguf_fuzz / gguf_fuzz_smoke: a short libFuzzer run (only when clang++ is found, since
#    libFuzzer needs clang while the main build may use gcc).
get_filename_component(_gguf_root ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)

file(GLOB _gguf_lib_srcs CONFIGURE_DEPENDS ${_gguf_root}/src/gguf/*.cpp)
file(GLOB _gguf_test_srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cpp)
set(_gguf_san -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

add_executable(test_gguf_asan ${_gguf_lib_srcs} ${_gguf_root}/src/quant/types.cpp
                              ${_gguf_test_srcs})
target_include_directories(test_gguf_asan PRIVATE ${_gguf_root}/src ${_gguf_root}/tests)
target_compile_definitions(test_gguf_asan PRIVATE
  LOKAL_SHARED_DEFAULT="${LOKAL_SHARED_DEFAULT}"
  LOKAL_SOURCE_DIR="${_gguf_root}"
  LOKAL_BINARY_DIR="${CMAKE_BINARY_DIR}")
# -O1 keeps the sanitized run fast while leaving stack traces readable.
target_compile_options(test_gguf_asan PRIVATE ${_gguf_san} -O1 -g)
target_link_options(test_gguf_asan PRIVATE ${_gguf_san})
target_link_libraries(test_gguf_asan PRIVATE GTest::gtest_main)
add_test(NAME gguf_asan COMMAND test_gguf_asan)
set_tests_properties(gguf_asan PROPERTIES TIMEOUT 300
  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1;UBSAN_OPTIONS=print_stacktrace=1")

find_program(LOKAL_CLANGXX clang++)
if(LOKAL_CLANGXX)
  set(_gguf_fuzz_bin ${CMAKE_BINARY_DIR}/bin/gguf_fuzz)
  add_custom_command(
    OUTPUT ${_gguf_fuzz_bin}
    COMMAND ${CMAKE_COMMAND} -E env CXX_FUZZ=${LOKAL_CLANGXX}
            ${_gguf_root}/fuzz/build.sh ${_gguf_fuzz_bin}
    DEPENDS ${_gguf_root}/fuzz/gguf_fuzz.cpp ${_gguf_root}/fuzz/build.sh ${_gguf_lib_srcs}
            ${_gguf_root}/src/gguf/gguf.h ${_gguf_root}/src/quant/types.cpp
            ${_gguf_root}/src/quant/types.h
    COMMENT "Building the GGUF fuzzer with clang++"
    VERBATIM)
  add_custom_target(gguf_fuzz ALL DEPENDS ${_gguf_fuzz_bin})
  # libFuzzer adds new inputs to its first corpus directory: a scratch one in the build
  # tree, so the committed seeds are never modified.
  set(_gguf_fuzz_work ${CMAKE_BINARY_DIR}/gguf_fuzz_work)
  add_test(NAME gguf_fuzz_smoke
    COMMAND sh -c "rm -rf \"$1\" && mkdir -p \"$1/corpus\" && exec \"$0\" -runs=20000 -max_total_time=30 -max_len=4096 -artifact_prefix=\"$1/\" \"$1/corpus\" \"$2\" \"$3\""
            ${_gguf_fuzz_bin} ${_gguf_fuzz_work} ${CMAKE_CURRENT_LIST_DIR}/malformed
            ${CMAKE_CURRENT_LIST_DIR}/seeds)
  set_tests_properties(gguf_fuzz_smoke PROPERTIES TIMEOUT 120)
endif()

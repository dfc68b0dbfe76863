// Registries of the built-in filters, tests and global functions.
#pragma once
#include <string_view>

#include "template/ast.h"

namespace lokal::tmpl {

class Scope;

FilterFn find_filter(std::string_view name);  // nullptr if unknown
TestFn find_test(std::string_view name);      // nullptr if unknown

// range, dict, namespace, cycler, joiner, lipsum.
void install_default_globals(Scope& scope);

}  // namespace lokal::tmpl

// A private temporary directory, removed with everything in it when the object goes away:
// for the replay tool's remote mirror, the benchmarks and the tests.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "ledger/error.h"

namespace tokenledger {

class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "tokenledger") {
    std::string pattern =
        (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw Error(ErrorCode::kStorage, "cannot create a temporary directory in " +
                                           std::filesystem::temp_directory_path().string());
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace tokenledger

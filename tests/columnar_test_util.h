// What the tests of the two columnar readers (ParquetFile, ArrowFile) share: a file's rows as JSON, and damaged
// copies of a file, each of which must be an error naming it.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "test_util.h"

namespace autotrain::testing {

// The rows of `path` as JSON objects of `columns` (all the file's columns when empty), checking the row numbers the
// reader hands out, the count it returns and its rows().
template <typename ColumnarFile>
nlohmann::json columnar_rows(const std::string& path, std::vector<std::string> columns = {}) {
  const ColumnarFile file = ColumnarFile::open(path);
  if (columns.empty()) columns = file.columns();
  nlohmann::json rows = nlohmann::json::array();
  const int64_t count = file.for_each_row(columns, [&](std::vector<nlohmann::ordered_json>& cells, int64_t row) {
    EXPECT_EQ(row, static_cast<int64_t>(rows.size()) + 1);
    nlohmann::json object = nlohmann::json::object();
    for (size_t c = 0; c < columns.size(); ++c) object[columns[c]] = nlohmann::json::parse(cells[c].dump());
    rows.push_back(object);
  });
  EXPECT_EQ(count, static_cast<int64_t>(rows.size()));
  EXPECT_EQ(file.rows(), count);
  return rows;
}

// Writes to `path` the file's `bytes` cut at each of `cuts` (each must be an error) and then, `trials` times, with
// 1 to 4 bytes set at random by `random` (which may leave a readable file: a flip inside a text), reading each with
// `read`: every error must name `path`, and none may crash or hang.
inline void expect_damage_named(const std::string& bytes, const std::string& path, const std::vector<size_t>& cuts,
                                int trials, std::mt19937& random, const std::function<void()>& read) {
  auto check = [&](const std::string& contents, bool must_fail) {
    write_text(path, contents);
    try {
      read();
      EXPECT_FALSE(must_fail);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  for (size_t keep : cuts) check(bytes.substr(0, keep), true);
  for (int trial = 0; trial < trials; ++trial) {
    std::string corrupt = bytes;
    for (int flips = 0; flips < 1 + trial % 4; ++flips)
      corrupt[random() % corrupt.size()] = static_cast<char>(random() % 256);
    check(corrupt, false);
  }
}

}  // namespace autotrain::testing

#include "autotrain/fileio.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"

namespace autotrain {
namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading (" + std::strerror(errno) + ")");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(path + ": read failed");
  return buffer.str();
}

namespace {

void write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      throw Error(path + ": write failed (" + std::strerror(errno) + "); free some space or choose another output folder");
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
}

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);  // best effort: some file systems refuse fsync on directories
    ::close(fd);
  }
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), temporary_(path_ + ".tmp." + std::to_string(::getpid())) {
  std::error_code ec;
  auto status = fs::status(path_, ec);
  if (fs::exists(status) && !fs::is_regular_file(status))
    throw Error(path_ + ": exists and is not a regular file; choose another output path");
  fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(path_ + ": cannot create (" + std::strerror(errno) + "); check that the folder exists and is writable");
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(temporary_.c_str());
  }
}

void AtomicFileWriter::write(std::string_view data) {
  if (fd_ < 0) throw Error(path_ + ": write after commit");
  write_all(fd_, data, path_);
}

void AtomicFileWriter::commit() {
  if (fd_ < 0) throw Error(path_ + ": committed twice");
  if (::fsync(fd_) != 0) throw Error(path_ + ": fsync failed (" + std::strerror(errno) + ")");
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    int saved = errno;
    ::unlink(temporary_.c_str());
    throw Error(path_ + ": close failed (" + std::strerror(saved) + ")");
  }
  if (::rename(temporary_.c_str(), path_.c_str()) != 0) {
    int saved = errno;
    ::unlink(temporary_.c_str());
    throw Error(path_ + ": rename failed (" + std::strerror(saved) + ")");
  }
  fsync_directory(fs::path(path_).parent_path());
}

nlohmann::json parse_json_file(const std::string& path, const std::string& what_to_do) {
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(path + ": not valid JSON (at byte " + std::to_string(e.byte) + "); the file is truncated or damaged: " +
                what_to_do);
  } catch (const nlohmann::json::exception& e) {  // a number out of range
    throw Error(path + ": not valid JSON (" + e.what() + "); " + what_to_do);
  }
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  AtomicFileWriter writer(path);
  writer.write(contents);
  writer.commit();
}

void make_directories(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) {
    throw Error(path + ": cannot create folder (" + ec.message() +
                "); check that no file has this name and the parent folder is writable");
  }
}

}  // namespace autotrain

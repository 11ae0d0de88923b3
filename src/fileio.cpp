#include "autotrain/fileio.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

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

void write_file_atomic(const std::string& path, std::string_view contents) {
  const fs::path target(path);
  std::error_code ec;
  auto status = fs::status(target, ec);
  if (fs::exists(status) && !fs::is_regular_file(status))
    throw Error(path + ": exists and is not a regular file; choose another output path");
  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot create (" + std::strerror(errno) + "); check that the folder exists and is writable");
  try {
    write_all(fd, contents, path);
    if (::fsync(fd) != 0) throw Error(path + ": fsync failed (" + std::strerror(errno) + ")");
  } catch (...) {
    ::close(fd);
    ::unlink(temporary.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(temporary.c_str());
    throw Error(path + ": close failed (" + std::strerror(errno) + ")");
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(temporary.c_str());
    throw Error(path + ": rename failed (" + std::strerror(saved) + ")");
  }
  fsync_directory(target.parent_path());
}

void make_directories(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw Error(path + ": cannot create folder (" + ec.message() + ")");
}

}  // namespace autotrain

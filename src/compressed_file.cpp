#include "compressed_file.h"

#include <zlib.h>
#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "autotrain/error.h"
#include "autotrain/text_util.h"

namespace autotrain {

namespace {

// A streambuf over a compressed file: fills its get area with decompressed bytes, 256 KiB at a time.
class DecompressingBuffer : public std::streambuf {
 public:
  DecompressingBuffer(const std::string& path, FileCompression kind)
      : path_(path), kind_(kind), file_(path, std::ios::binary), in_(1 << 16), out_(1 << 18) {
    if (!file_) throw Error(path + ": cannot open the dataset");
    if (kind_ == FileCompression::gzip) {
      if (inflateInit2(&z_, 15 + 16) != Z_OK) throw Error(path + ": zlib could not start");
    } else {
      zstd_ = ZSTD_createDStream();
      if (!zstd_ || ZSTD_isError(ZSTD_initDStream(zstd_))) throw Error(path + ": zstd could not start");
    }
  }
  ~DecompressingBuffer() override {
    if (kind_ == FileCompression::gzip) inflateEnd(&z_);
    else ZSTD_freeDStream(zstd_);
  }
  DecompressingBuffer(const DecompressingBuffer&) = delete;
  DecompressingBuffer& operator=(const DecompressingBuffer&) = delete;

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    size_t produced = 0;
    while (produced == 0) {
      // Zero bytes after a gzip member are padding (tape blocks), which gzip and Python's gzip skip too.
      if (kind_ == FileCompression::gzip && finished_)
        while (at_ < end_ && in_[at_] == 0) ++at_;
      if (at_ == end_) {
        if (refill()) continue;
        if (!finished_) throw corrupt("it ends inside a compressed stream (a download that stopped early?)");
        return traits_type::eof();
      }
      produced = kind_ == FileCompression::gzip ? inflate_some() : zstd_some();
    }
    setg(out_.data(), out_.data(), out_.data() + produced);
    return traits_type::to_int_type(*gptr());
  }

 private:
  Error corrupt(const std::string& why) const {
    return Error(path_ + ": the " + (kind_ == FileCompression::gzip ? "gzip" : "zstd") + " file is corrupt: " + why);
  }

  bool refill() {
    file_.read(in_.data(), static_cast<std::streamsize>(in_.size()));
    at_ = 0;
    end_ = static_cast<size_t>(file_.gcount());
    if (file_.bad()) throw Error(path_ + ": read failed");
    return end_ > 0;
  }

  size_t inflate_some() {
    if (finished_) {  // another gzip member follows the last one
      if (inflateReset(&z_) != Z_OK) throw corrupt("zlib could not restart");
      finished_ = false;
    }
    z_.next_in = reinterpret_cast<Bytef*>(in_.data() + at_);
    z_.avail_in = static_cast<uInt>(end_ - at_);
    z_.next_out = reinterpret_cast<Bytef*>(out_.data());
    z_.avail_out = static_cast<uInt>(out_.size());
    const int status = inflate(&z_, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR)
      throw corrupt(z_.msg ? z_.msg : "zlib error " + std::to_string(status));
    at_ = end_ - z_.avail_in;
    finished_ = status == Z_STREAM_END;
    return out_.size() - z_.avail_out;
  }

  size_t zstd_some() {
    ZSTD_inBuffer input{in_.data(), end_, at_};
    ZSTD_outBuffer output{out_.data(), out_.size(), 0};
    const size_t status = ZSTD_decompressStream(zstd_, &output, &input);
    if (ZSTD_isError(status)) throw corrupt(ZSTD_getErrorName(status));
    at_ = input.pos;
    finished_ = status == 0;  // a frame ended exactly here
    return output.pos;
  }

  std::string path_;
  FileCompression kind_;
  std::ifstream file_;
  std::vector<char> in_, out_;
  size_t at_ = 0, end_ = 0;
  bool finished_ = true;  // no stream started: an empty file is an empty dataset
  z_stream z_{};
  ZSTD_DStream* zstd_ = nullptr;
};

class DecompressedStream : public std::istream {
 public:
  DecompressedStream(const std::string& path, FileCompression kind) : std::istream(nullptr), buffer_(path, kind) {
    rdbuf(&buffer_);
    exceptions(std::ios::badbit);  // the buffer's Error reaches the reader
  }

 private:
  DecompressingBuffer buffer_;
};

}  // namespace

FileCompression compression_of(const std::string& path) {
  const std::string ext = ascii_lower(std::filesystem::path(path).extension().string());
  if (ext == ".gz") return FileCompression::gzip;
  if (ext == ".zst" || ext == ".zstd") return FileCompression::zstd;
  return FileCompression::none;
}

std::string without_compression_suffix(const std::string& path) {
  if (compression_of(path) == FileCompression::none) return path;
  return path.substr(0, path.size() - std::filesystem::path(path).extension().string().size());
}

std::unique_ptr<std::istream> open_decompressed(const std::string& path) {
  const FileCompression kind = compression_of(path);
  if (kind == FileCompression::none) {
    auto in = std::make_unique<std::ifstream>(path, std::ios::binary);
    if (!*in) throw Error(path + ": cannot open the dataset");
    return in;
  }
  return std::make_unique<DecompressedStream>(path, kind);
}

int64_t stated_decompressed_size(const std::string& path) {
  std::error_code ec;
  const auto size = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  if (ec) return 0;
  std::ifstream in(path, std::ios::binary);
  switch (compression_of(path)) {
    case FileCompression::none: return size;
    case FileCompression::gzip: {
      if (size < 18) return 0;
      unsigned char tail[4];
      in.seekg(size - 4);
      in.read(reinterpret_cast<char*>(tail), 4);
      return in ? int64_t(tail[0]) | int64_t(tail[1]) << 8 | int64_t(tail[2]) << 16 | int64_t(tail[3]) << 24 : 0;
    }
    case FileCompression::zstd: {
      char head[18] = {};  // a zstd frame header is 18 bytes at the most
      in.read(head, sizeof head);
      const unsigned long long stated = ZSTD_getFrameContentSize(head, static_cast<size_t>(in.gcount()));
      return stated == ZSTD_CONTENTSIZE_UNKNOWN || stated == ZSTD_CONTENTSIZE_ERROR ? 0 : int64_t(stated);
    }
  }
  return 0;
}

}  // namespace autotrain

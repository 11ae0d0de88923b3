// The compression codecs of Parquet pages: snappy written here (its raw format is small), gzip through zlib and
// zstd through libzstd (Debian's zlib1g-dev and libzstd-dev).
#include <zlib.h>
#include <zstd.h>

#include <cstring>

#include "autotrain/error.h"
#include "autotrain/parquet.h"
#include "parquet_format.h"

namespace autotrain {

namespace {

// parquet-format's CompressionCodec.
enum Codec { kUncompressed = 0, kSnappy = 1, kGzip = 2, kLzo = 3, kBrotli = 4, kLz4 = 5, kZstd = 6, kLz4Raw = 7 };

const char* codec_name(int codec) {
  switch (codec) {
    case kLzo: return "LZO";
    case kBrotli: return "Brotli";
    case kLz4: return "LZ4 (Hadoop framing)";
    case kLz4Raw: return "LZ4";
    default: return nullptr;
  }
}

// The most each codec can expand its input (so a corrupt size is refused before it is allocated): deflate
// 1032 : 1 (zlib's technical details), zstd 128 KiB from a 4-byte RLE block, snappy 64 bytes from a 3-byte copy.
constexpr size_t kMostDeflateRatio = 1032, kMostZstdRatio = 32768, kMostSnappyRatio = 22;

std::string gzip_decompress(const uint8_t* data, size_t length, size_t size, const std::string& what) {
  if (size > kMostDeflateRatio * length + 1024)
    throw Error(what + ": the gzip-compressed page is corrupt (" + std::to_string(size) + " bytes from " +
                std::to_string(length) + ")");
  std::string out(size, '\0');
  z_stream stream{};
  // 15 + 32: a zlib or gzip header, detected (Parquet's GZIP pages carry gzip's; some writers wrote zlib's).
  if (inflateInit2(&stream, 15 + 32) != Z_OK) throw Error(what + ": zlib could not start");
  stream.next_in = const_cast<Bytef*>(data);
  stream.avail_in = static_cast<uInt>(length);
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(size);
  const int status = inflate(&stream, Z_FINISH);
  const size_t written = size - stream.avail_out;
  inflateEnd(&stream);
  if (status != Z_STREAM_END || written != size)
    throw Error(what + ": the gzip-compressed page is corrupt (" + std::to_string(written) + " of " +
                std::to_string(size) + " bytes)");
  return out;
}

}  // namespace

std::string zstd_decompress(const uint8_t* data, size_t length, size_t size, const std::string& what) {
  const unsigned long long stated = ZSTD_getFrameContentSize(data, length);
  // Data may hold several frames (some writers stream), so only a first frame larger than the whole is corrupt.
  if (stated == ZSTD_CONTENTSIZE_ERROR || (stated != ZSTD_CONTENTSIZE_UNKNOWN && stated > size) ||
      size > kMostZstdRatio * length + 1024)
    throw Error(what + ": the zstd-compressed data is corrupt (its frame does not hold the stated " +
                std::to_string(size) + " bytes)");
  std::string out(size, '\0');
  const size_t written = ZSTD_decompress(out.data(), size, data, length);
  if (ZSTD_isError(written) || written != size)
    throw Error(what + ": the zstd-compressed data is corrupt (" +
                (ZSTD_isError(written) ? std::string(ZSTD_getErrorName(written))
                                       : std::to_string(written) + " of " + std::to_string(size) + " bytes") +
                ")");
  return out;
}

std::string snappy_decompress(const uint8_t* data, size_t length, size_t size, const std::string& what) {
  auto corrupt = [&](const char* why) { return Error(what + ": the snappy-compressed page is corrupt (" + why + ")"); };
  size_t at = 0;
  uint64_t stated = 0;
  // The length is a varint of 32 bits at the most: 5 bytes.
  if (parquet::read_varint(data, length, at, stated) != parquet::Varint::ok || at > 5) throw corrupt("its length");
  if (stated != size) throw corrupt("not the size the page's header states");
  if (size > kMostSnappyRatio * length + 64) throw corrupt("a length no stream of its size can reach");
  std::string out;
  out.reserve(size);
  while (at < length) {
    const uint8_t tag = data[at++];
    size_t run = 0, offset = 0;
    if ((tag & 3) == 0) {  // a literal: length - 1 in the tag's top six bits, or in the 1-4 bytes after it
      run = tag >> 2;
      if (run >= 60) {
        const size_t bytes = run - 59;
        if (length - at < bytes) throw corrupt("a literal's length");
        run = 0;
        for (size_t i = 0; i < bytes; ++i) run |= size_t(data[at + i]) << (8 * i);
        at += bytes;
      }
      ++run;
      if (length - at < run || out.size() + run > size) throw corrupt("a literal past the end");
      out.append(reinterpret_cast<const char*>(data + at), run);
      at += run;
      continue;
    }
    if ((tag & 3) == 1) {  // a copy: 4-11 bytes, an 11-bit offset
      if (at == length) throw corrupt("a copy's offset");
      run = 4 + ((tag >> 2) & 7);
      offset = (size_t(tag >> 5) << 8) | data[at++];
    } else {  // a copy: 1-64 bytes, a 16- or 32-bit offset
      const size_t bytes = (tag & 3) == 2 ? 2 : 4;
      if (length - at < bytes) throw corrupt("a copy's offset");
      run = (tag >> 2) + 1;
      for (size_t i = 0; i < bytes; ++i) offset |= size_t(data[at + i]) << (8 * i);
      at += bytes;
    }
    if (offset == 0 || offset > out.size() || out.size() + run > size) throw corrupt("a copy out of range");
    const size_t from = out.size() - offset;
    for (size_t i = 0; i < run; ++i) out.push_back(out[from + i]);  // may overlap what it writes
  }
  if (out.size() != size) throw corrupt("shorter than its stated length");
  return out;
}

std::string decompress_page(int codec, const uint8_t* data, size_t length, size_t size, const std::string& what) {
  switch (codec) {
    case kUncompressed:
      if (length != size) throw Error(what + ": an uncompressed page whose sizes differ");
      return std::string(reinterpret_cast<const char*>(data), length);
    case kSnappy: return snappy_decompress(data, length, size, what);
    case kGzip: return gzip_decompress(data, length, size, what);
    case kZstd: return zstd_decompress(data, length, size, what);
    default: break;
  }
  const char* name = codec_name(codec);
  throw Error(what + ": pages compressed with " + (name ? name : "codec " + std::to_string(codec)) +
              ", which autotrain does not read; rewrite the file with snappy or zstd (pyarrow: "
              "pq.write_table(pq.read_table(path), path, compression=\"zstd\"))");
}

}  // namespace autotrain

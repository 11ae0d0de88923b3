// The compression codecs of Parquet pages and Arrow buffers: snappy and LZ4 written here (their formats are small),
// gzip through zlib and zstd through libzstd (Debian's zlib1g-dev and libzstd-dev).
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
    default: return nullptr;
  }
}

// The most each codec can expand its input (so a corrupt size is refused before it is allocated): deflate
// 1032 : 1 (zlib's technical details), zstd 128 KiB from a 4-byte RLE block, snappy 64 bytes from a 3-byte copy,
// LZ4 255 bytes of match from each further length byte.
constexpr size_t kMostDeflateRatio = 1032, kMostZstdRatio = 32768, kMostSnappyRatio = 22, kMostLz4Ratio = 256;

uint32_t load_le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint32_t load_be32(const uint8_t* p) {
  return uint32_t(p[3]) | uint32_t(p[2]) << 8 | uint32_t(p[1]) << 16 | uint32_t(p[0]) << 24;
}

// One LZ4 block (lz4/doc/lz4_Block_format.md) appended to `out`, which must not pass `size` bytes: sequences of a
// token (literals' length in its high 4 bits, the match's length - 4 in its low 4; 15 continues in bytes of 255
// until a smaller one), the literals, then a 2-byte little-endian offset back into the output (earlier blocks of
// the same output included) and the match; the last sequence is literals only.
void lz4_block_into(const uint8_t* data, size_t length, size_t size, std::string& out, const std::string& what) {
  auto corrupt = [&](const char* why) { return Error(what + ": the LZ4-compressed data is corrupt (" + why + ")"); };
  size_t at = 0;
  auto extend = [&](size_t& run) {  // a length's further bytes
    uint8_t byte = 255;
    while (byte == 255) {
      if (at == length) throw corrupt("a length past the end");
      byte = data[at++];
      run += byte;
    }
  };
  if (length == 0) throw corrupt("an empty block");
  while (true) {
    const uint8_t token = data[at++];
    size_t literals = token >> 4;
    if (literals == 15) extend(literals);
    if (length - at < literals || size - out.size() < literals) throw corrupt("literals past the end");
    out.append(reinterpret_cast<const char*>(data + at), literals);
    at += literals;
    if (at == length) return;  // the last sequence
    if (length - at < 2) throw corrupt("a match's offset");
    const size_t offset = size_t(data[at]) | size_t(data[at + 1]) << 8;
    at += 2;
    size_t run = (token & 15);
    if (run == 15) extend(run);
    run += 4;
    if (offset == 0 || offset > out.size() || size - out.size() < run) throw corrupt("a match out of range");
    const size_t from = out.size() - offset;
    for (size_t i = 0; i < run; ++i) out.push_back(out[from + i]);  // may overlap what it writes
    if (at == length) throw corrupt("a block ending with a match");
  }
}

// LZ4's frame format (lz4/doc/lz4_Frame_format.md), one frame after another (skippable frames stepped over):
// magic 0x184D2204, a descriptor (flags, the block size, the content size and dictionary id when flagged, a
// checksum byte), blocks of a 4-byte size (the top bit: stored uncompressed) each followed by its checksum when
// flagged, a zero size, then the content checksum when flagged. Checksums are skipped, not verified: every length
// is checked, and the output must be exactly `size` bytes.
void lz4_frames_into(const uint8_t* data, size_t length, size_t size, std::string& out, const std::string& what) {
  auto corrupt = [&](const std::string& why) {
    return Error(what + ": the LZ4 frame is corrupt (" + why + ")");
  };
  size_t at = 0;
  auto need = [&](size_t n, const char* part) {
    if (length - at < n) throw corrupt(std::string("it ends inside ") + part);
  };
  while (at < length) {
    need(4, "a frame's magic number");
    const uint32_t magic = load_le32(data + at);
    at += 4;
    if ((magic & 0xFFFFFFF0u) == 0x184D2A50u) {  // a skippable frame
      need(4, "a skippable frame's size");
      const uint32_t skip = load_le32(data + at);
      at += 4;
      need(skip, "a skippable frame");
      at += skip;
      continue;
    }
    if (magic != 0x184D2204u) throw corrupt("not an LZ4 frame's magic number");
    need(2, "the frame descriptor");
    const uint8_t flags = data[at];
    at += 2;  // FLG and BD
    if ((flags >> 6) != 1) throw corrupt("frame version " + std::to_string(flags >> 6));
    const bool block_checksums = flags & 0x10, content_size = flags & 0x08, content_checksum = flags & 0x04;
    if (flags & 0x01) throw Error(what + ": an LZ4 frame that needs a dictionary, which autotrain does not have");
    const size_t descriptor_rest = (content_size ? 8 : 0) + 1;  // and the header checksum
    need(descriptor_rest, "the frame descriptor");
    at += descriptor_rest;
    while (true) {
      need(4, "a block's size");
      const uint32_t word = load_le32(data + at);
      at += 4;
      if (word == 0) break;  // the end mark
      const size_t block = word & 0x7FFFFFFFu;
      need(block, "a block");
      if (word & 0x80000000u) {
        if (size - out.size() < block) throw corrupt("more data than stated");
        out.append(reinterpret_cast<const char*>(data + at), block);
      } else {
        lz4_block_into(data + at, block, size, out, what);
      }
      at += block;
      if (block_checksums) {
        need(4, "a block's checksum");
        at += 4;
      }
    }
    if (content_checksum) {
      need(4, "the content checksum");
      at += 4;
    }
  }
}

// Hadoop's framing, Parquet's old LZ4 codec: chunks of a big-endian uncompressed size, a big-endian compressed size
// and that LZ4 block. True when `data` is such chunks and they fill `out` with exactly `size` bytes; false (with
// `out` partly written) when it is not that framing.
bool lz4_hadoop_chunks_into(const uint8_t* data, size_t length, size_t size, std::string& out,
                            const std::string& what) {
  for (size_t at = 0; at < length;) {
    if (length - at < 8) return false;
    const size_t chunk_size = load_be32(data + at), chunk_length = load_be32(data + at + 4);
    if (chunk_length > length - at - 8 || chunk_size > size - out.size()) return false;
    const size_t before = out.size();
    try {
      lz4_block_into(data + at + 8, chunk_length, before + chunk_size, out, what);
    } catch (const Error&) {
      return false;
    }
    if (out.size() != before + chunk_size) return false;
    at += 8 + chunk_length;
  }
  return out.size() == size;
}

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

std::string lz4_decompress(Lz4Format format, const uint8_t* data, size_t length, size_t size,
                           const std::string& what) {
  if (size > kMostLz4Ratio * length + 64)
    throw Error(what + ": the LZ4-compressed data is corrupt (" + std::to_string(size) + " bytes from " +
                std::to_string(length) + ")");
  std::string out;
  out.reserve(size);
  if (format == Lz4Format::hadoop) {
    // Some writers put a plain LZ4 block or frame under this codec (Arrow's reader tries all three).
    if (length >= 8 && lz4_hadoop_chunks_into(data, length, size, out, what)) return out;
    out.clear();
    format = length >= 4 && load_le32(data) == 0x184D2204u ? Lz4Format::frame : Lz4Format::block;
  }
  if (format == Lz4Format::frame) {
    lz4_frames_into(data, length, size, out, what);
  } else {
    lz4_block_into(data, length, size, out, what);
  }
  if (out.size() != size)
    throw Error(what + ": the LZ4-compressed data is corrupt (" + std::to_string(out.size()) + " of " +
                std::to_string(size) + " bytes)");
  return out;
}

std::string decompress_page(int codec, const uint8_t* data, size_t length, size_t size, const std::string& what) {
  switch (codec) {
    case kLz4Raw: return lz4_decompress(Lz4Format::block, data, length, size, what);
    case kLz4: return lz4_decompress(Lz4Format::hadoop, data, length, size, what);
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
              ", which autotrain does not read; rewrite the file with snappy, zstd or lz4 (pyarrow: "
              "pq.write_table(pq.read_table(path), path, compression=\"zstd\"))");
}

}  // namespace autotrain

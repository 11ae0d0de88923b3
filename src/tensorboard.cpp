#include "autotrain/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "autotrain/error.h"
#include "autotrain/fileio.h"

namespace autotrain {

namespace {

std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));  // reflected polynomial
    table[i] = crc;
  }
  return table;
}

// TFRecord's masking (tensorflow/core/lib/hash/crc32c.h Mask): rotate right by 15, add a constant.
uint32_t masked_crc(const std::string& bytes) {
  const uint32_t crc = crc32c(bytes.data(), bytes.size());
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// Protobuf wire format: varints, and fields of type double (wire type 1), length-delimited (2) and float (5).
void varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}
template <typename T>
void little_endian(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // x86-64 and aarch64 Linux are little-endian
  out.append(bytes, sizeof(T));
}
void field_double(std::string& out, int field, double value) { varint(out, field << 3 | 1), little_endian(out, value); }
void field_float(std::string& out, int field, float value) { varint(out, field << 3 | 5), little_endian(out, value); }
void field_varint(std::string& out, int field, uint64_t value) { varint(out, field << 3 | 0), varint(out, value); }
void field_bytes(std::string& out, int field, const std::string& bytes) {
  varint(out, field << 3 | 2), varint(out, bytes.size()), out += bytes;
}

std::string hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = crc32c_table();
  uint32_t crc = 0xffffffffu;
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ bytes[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

std::string tensorboard_run_dir(const std::string& output_dir) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  char stamp[64];
  std::strftime(stamp, sizeof stamp, "%b%d_%H-%M-%S", &local);
  return (std::filesystem::path(output_dir) / "runs" / (std::string(stamp) + "_" + hostname())).string();
}

std::string tensorboard_tag(const std::string& key) {
  if (key.rfind("eval_", 0) == 0) return "eval/" + key.substr(5);
  return "train/" + (key == "lr" ? std::string("learning_rate") : key);
}

TensorBoardWriter::TensorBoardWriter(const std::string& log_dir) {
  make_directories(log_dir);
  const double wall_time = now_seconds();
  path_ = (std::filesystem::path(log_dir) / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(wall_time)) +
                                            "." + hostname() + "." + std::to_string(::getpid()) + ".0"))
              .string();
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw Error(path_ + ": cannot create the TensorBoard event file; check the folder is writable");
  std::string event;
  field_double(event, 1, wall_time);
  field_bytes(event, 3, "brain.Event:2");
  record(event);
  flush();
}

void TensorBoardWriter::scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  std::string summary_value;
  field_bytes(summary_value, 1, tag);
  field_float(summary_value, 2, static_cast<float>(value));
  std::string summary;
  field_bytes(summary, 1, summary_value);
  std::string event;
  field_double(event, 1, wall_time);
  field_varint(event, 2, static_cast<uint64_t>(step));
  field_bytes(event, 5, summary);
  record(event);
}

void TensorBoardWriter::record(const std::string& event) {
  std::string length;
  little_endian(length, static_cast<uint64_t>(event.size()));
  std::string framed = length;
  little_endian(framed, masked_crc(length));
  framed += event;
  little_endian(framed, masked_crc(event));
  out_.write(framed.data(), static_cast<std::streamsize>(framed.size()));
}

void TensorBoardWriter::flush() {
  out_.flush();
  if (!out_)
    throw Error(path_ + ": writing the TensorBoard event file failed (" + std::strerror(errno) +
                "); free some space or set \"log\": \"none\"");
}

}  // namespace autotrain

// Little-endian fixed-width encoding shared by every on-disk structure
// (record headers, journal entries, index values). Decoding never reads past
// the input: a short or malformed buffer makes the reader fail, not crash.
#pragma once

#include <cstdint>
#include <bit>
#include <cstring>
#include <string>
#include "absl/strings/string_view.h"

namespace kvfs {

class Encoder {
 public:
  void U8(uint8_t v) { buf_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { Fixed(v); }
  void U32(uint32_t v) { Fixed(v); }
  void U64(uint64_t v) { Fixed(v); }
  void I64(int64_t v) { Fixed(static_cast<uint64_t>(v)); }
  // Length-prefixed (u32) bytes.
  void Bytes(absl::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    buf_.append(s.data(), s.size());
  }
  void Raw(absl::string_view s) { buf_.append(s.data(), s.size()); }
  void PadTo(size_t size) {
    if (buf_.size() < size) buf_.resize(size, '\0');
  }

  size_t size() const { return buf_.size(); }
  const std::string& data() const { return buf_; }
  std::string& mutable_data() { return buf_; }
  std::string Release() { return std::move(buf_); }

 private:
  template <typename T>
  void Fixed(T v) {
    static_assert(std::endian::native == std::endian::little);
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    buf_.append(b, sizeof(T));
  }
  std::string buf_;
};

class Decoder {
 public:
  explicit Decoder(absl::string_view in) : in_(in) {}

  bool U8(uint8_t* v) { return Fixed(v); }
  bool U16(uint16_t* v) { return Fixed(v); }
  bool U32(uint32_t* v) { return Fixed(v); }
  bool U64(uint64_t* v) { return Fixed(v); }
  bool I64(int64_t* v) {
    uint64_t u;
    if (!Fixed(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  // Length-prefixed bytes no longer than `max_len`.
  bool Bytes(absl::string_view* v, uint32_t max_len = UINT32_MAX) {
    uint32_t n;
    if (!U32(&n) || n > max_len || n > in_.size() - pos_) return false;
    *v = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool Raw(size_t n, absl::string_view* v) {
    if (n > in_.size() - pos_) return false;
    *v = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }

  size_t position() const { return pos_; }
  size_t remaining() const { return in_.size() - pos_; }

 private:
  template <typename T>
  bool Fixed(T* v) {
    if (sizeof(T) > in_.size() - pos_) return false;
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  absl::string_view in_;
  size_t pos_ = 0;
};

// Big-endian u64, for index keys that must sort numerically.
inline void AppendBigEndian64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}
inline uint64_t ReadBigEndian64(absl::string_view in) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < in.size(); ++i) {
    v = (v << 8) | static_cast<uint8_t>(in[i]);
  }
  return v;
}

}  // namespace kvfs

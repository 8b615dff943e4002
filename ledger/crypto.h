// Thin, typed wrappers over OpenSSL (EVP) for what the ledger needs: SHA-256, the system RNG,
// constant-time comparison and Ed25519 keys. Nothing here ever logs key material.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

typedef struct evp_pkey_st EVP_PKEY;

namespace tokenledger {

using Bytes = std::span<const uint8_t>;
using Digest = std::array<uint8_t, 32>;
using Ed25519PublicKey = std::array<uint8_t, 32>;
using Ed25519Signature = std::array<uint8_t, 64>;

inline Bytes asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// SHA-256 over the concatenation of `parts`.
Digest sha256(std::initializer_list<Bytes> parts);
inline Digest sha256(Bytes data) { return sha256({data}); }

// Fills `out` from OpenSSL's CSPRNG; throws Error(kInternal) if the RNG fails.
void randomBytes(std::span<uint8_t> out);

// Equal-length comparison whose time does not depend on where the inputs differ.
bool constantTimeEqual(Bytes a, Bytes b);

std::string toHex(Bytes data);
// The same into `out`, which must hold exactly 2 * data.size() characters.
void writeHex(Bytes data, std::span<char> out);
// Lowercase or uppercase hex into exactly out.size() bytes; false if `hex` is not that.
bool fromHex(std::string_view hex, std::span<uint8_t> out);

struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const;
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// An Ed25519 public key, ready to verify. Cheap to share between threads (EVP_PKEY is
// reference-counted and verification does not mutate it).
class VerifyingKey {
 public:
  explicit VerifyingKey(const Ed25519PublicKey& raw);
  bool verify(Bytes message, Bytes signature) const;
  const Ed25519PublicKey& raw() const { return raw_; }
  const std::string& keyId() const { return keyId_; }
  std::string toPem() const;

 private:
  Ed25519PublicKey raw_;
  std::string keyId_;
  PkeyPtr key_;
};

// An Ed25519 private key. Move-only; never printed.
class SigningKey {
 public:
  static SigningKey generate();
  // Reads a PKCS#8 PEM file; refuses a file that others can read (mode & 077).
  static SigningKey load(const std::filesystem::path& path);
  // Writes PKCS#8 PEM with mode 0600, failing if the file exists.
  void save(const std::filesystem::path& path) const;

  Ed25519Signature sign(Bytes message) const;
  const Ed25519PublicKey& publicKey() const { return public_; }
  const std::string& keyId() const { return keyId_; }

 private:
  explicit SigningKey(PkeyPtr key);
  PkeyPtr key_;
  Ed25519PublicKey public_;
  std::string keyId_;
};

// Key ids name keys in seals and checkpoints: hex of the first 8 bytes of SHA-256(public key).
std::string keyIdOf(const Ed25519PublicKey& publicKey);

}  // namespace tokenledger

#include "ledger/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "ledger/error.h"

namespace tokenledger {
namespace {

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

[[noreturn]] void fail(const char* what) {
  throw Error(ErrorCode::kInternal, std::string("OpenSSL: ") + what + " failed");
}

// Fetched once: OpenSSL 3's implicit fetch on every EVP_sha256() call is measurably slow.
const EVP_MD* sha256Md() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (md == nullptr) fail("fetching SHA-256");
  return md;
}

Ed25519PublicKey rawPublicKey(EVP_PKEY* key) {
  Ed25519PublicKey raw;
  size_t len = raw.size();
  if (EVP_PKEY_get_raw_public_key(key, raw.data(), &len) != 1 || len != raw.size()) {
    fail("reading an Ed25519 public key");
  }
  return raw;
}

}  // namespace

void PkeyDeleter::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

Digest sha256(std::initializer_list<Bytes> parts) {
  // One context per thread, reused: allocating one per hash cost a third of a verification.
  thread_local const MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), sha256Md(), nullptr) != 1) fail("SHA-256 init");
  for (Bytes part : parts) {
    if (EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1) fail("SHA-256 update");
  }
  Digest out;
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size()) {
    fail("SHA-256 final");
  }
  return out;
}

void randomBytes(std::span<uint8_t> out) {
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) fail("RAND_bytes");
}

bool constantTimeEqual(Bytes a, Bytes b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void writeHex(Bytes data, std::span<char> out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  if (out.size() != data.size() * 2) throw Error(ErrorCode::kInternal, "writeHex: wrong output size");
  for (size_t i = 0; i < data.size(); ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
}

std::string toHex(Bytes data) {
  std::string out(data.size() * 2, '\0');
  writeHex(data, out);
  return out;
}

bool fromHex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::string keyIdOf(const Ed25519PublicKey& publicKey) {
  Digest d = sha256(publicKey);
  return toHex(Bytes(d.data(), 8));
}

VerifyingKey::VerifyingKey(const Ed25519PublicKey& raw)
    : raw_(raw),
      keyId_(keyIdOf(raw)),
      key_(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size())) {
  if (!key_) throw Error(ErrorCode::kInvalidArgument, "not a valid Ed25519 public key");
}

bool VerifyingKey::verify(Bytes message, Bytes signature) const {
  if (signature.size() != sizeof(Ed25519Signature)) return false;
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) {
    fail("Ed25519 verify init");
  }
  return EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                          message.size()) == 1;
}

std::string VerifyingKey::toPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) fail("writing a public key");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

SigningKey::SigningKey(PkeyPtr key)
    : key_(std::move(key)), public_(rawPublicKey(key_.get())), keyId_(keyIdOf(public_)) {}

SigningKey SigningKey::generate() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) fail("Ed25519 key generation");
  return SigningKey(PkeyPtr(key));
}

SigningKey SigningKey::load(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw Error(ErrorCode::kNotFound, "signing key " + path.string() + " is missing");
  }
  if ((st.st_mode & 077) != 0) {
    throw Error(ErrorCode::kFailedPrecondition,
                "signing key " + path.string() + " is readable by others; run chmod 600 on it");
  }
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw Error(ErrorCode::kStorage, "cannot open signing key " + path.string());
  EVP_PKEY* key = PEM_read_PrivateKey(file.get(), nullptr, nullptr, nullptr);
  if (key == nullptr || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(key);
    throw Error(ErrorCode::kInvalidArgument,
                "signing key " + path.string() + " is not an Ed25519 PEM private key");
  }
  return SigningKey(PkeyPtr(key));
}

void SigningKey::save(const std::filesystem::path& path) const {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw Error(ErrorCode::kStorage, "cannot create signing key file " + path.string() +
                                         " (it must not exist yet)");
  }
  std::unique_ptr<FILE, int (*)(FILE*)> file(::fdopen(fd, "wb"), &std::fclose);
  if (!file) {
    ::close(fd);
    fail("fdopen");
  }
  if (PEM_write_PrivateKey(file.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      std::fflush(file.get()) != 0 || ::fsync(fd) != 0) {
    throw Error(ErrorCode::kStorage, "cannot write signing key file " + path.string());
  }
}

Ed25519Signature SigningKey::sign(Bytes message) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) {
    fail("Ed25519 sign init");
  }
  Ed25519Signature sig;
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1 ||
      len != sig.size()) {
    fail("Ed25519 sign");
  }
  return sig;
}

}  // namespace tokenledger

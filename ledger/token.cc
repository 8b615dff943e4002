#include "ledger/token.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace tokenledger {

Scopes Scopes::of(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return Scopes{false, std::move(ids)};
}

std::string Scopes::describe() const {
  if (all) return "All Scopes";
  std::string out;
  for (const auto& id : selected) out += (out.empty() ? "" : ", ") + id;
  return out;
}

const char* roleName(Role role) {
  switch (role) {
    case Role::kUser: return "user";
    case Role::kAdmin: return "admin";
    case Role::kAuditor: return "auditor";
  }
  return "unknown";
}

bool parseRole(std::string_view text, Role& out) {
  for (Role r : kAllRoles) {
    if (text == roleName(r)) {
      out = r;
      return true;
    }
  }
  return false;
}

std::string RoleSet::describe() const {
  std::string out;
  for (Role r : kAllRoles) {
    if (has(r)) out += std::string(out.empty() ? "" : ", ") + roleName(r);
  }
  return out.empty() ? "none" : out;
}

const char* statusName(TokenStatus status) {
  switch (status) {
    case TokenStatus::kActive: return "active";
    case TokenStatus::kExpired: return "expired";
    case TokenStatus::kRevoked: return "revoked";
  }
  return "unknown";
}

int64_t nowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string formatTime(int64_t micros) {
  if (micros == 0) return "never";
  std::time_t seconds = static_cast<std::time_t>(micros / 1'000'000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char out[32];
  std::strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

bool parseTime(std::string_view text, int64_t& micros) {
  std::tm tm{};
  int consumed = 0;
  std::string s(text);
  if (s.size() == 10) {
    if (std::sscanf(s.c_str(), "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &consumed) != 3) {
      return false;
    }
  } else if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
                         &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return false;
  }
  if (static_cast<size_t>(consumed) != s.size() &&
      !(static_cast<size_t>(consumed) + 1 == s.size() && s.back() == 'Z')) {
    return false;
  }
  if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970) {
    return false;
  }
  int day = tm.tm_mday;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::time_t seconds = timegm(&tm);
  if (seconds < 0 || tm.tm_mday != day) return false;  // e.g. February 30th
  micros = static_cast<int64_t>(seconds) * 1'000'000;
  return true;
}

bool parseUnsigned(std::string_view text, uint64_t max, uint64_t& out) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > max) {
    return false;
  }
  out = value;
  return true;
}

}  // namespace tokenledger

// Copies a remote ledger's log into a local store through an auditor's session, so every offline
// check (verify, table, history, who-could, export) runs unchanged on what the server sent.
// The server is not trusted for anything: the copy is verified like any other log.
#pragma once

#include <functional>
#include <string>

#include "ledger/store.h"
#include "rpc/client.h"

namespace tokenledger::rpc {

// Copies every entry (events and seals) and every checkpoint. Returns the entries copied.
// Throws Error (e.g. kUnauthenticated, kPermissionDenied without audit:read).
uint64_t mirrorLog(Client& client, const std::string& credential, Store& into,
                   const std::function<void(uint64_t)>& progress = {});

}  // namespace tokenledger::rpc

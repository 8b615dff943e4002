#include "rpc/log_mirror.h"

#include "ledger/chain.h"
#include "rpc/wire.h"

namespace tokenledger::rpc {

uint64_t mirrorLog(Client& client, const std::string& credential, Store& into,
                   const std::function<void(uint64_t)>& progress) {
  auto& ws = client.waitScope();
  try {
    auto login = client.ledger().loginRequest();
    login.initCredential().setToken(credential);
    auto session = login.send().getSession();

    uint64_t copied = 0;
    uint64_t from = 1;
    while (from != 0) {
      auto request = session.historyRequest();
      auto filter = request.initFilter();
      filter.setAll();
      filter.setFromSeq(from);
      filter.setLimit(1000);
      auto page = request.send().wait(ws);
      rocksdb::WriteBatch batch;
      for (auto entry : page.getEntries()) {
        std::string key = seqKey(entry.getEvent().getSeq());
        // Canonical encoding is unique, so this is byte for byte what the server hashed.
        batch.Put(into.family(Family::kEvents), key, canonicalBytes(entry.getEvent()));
        if (entry.hasSeal()) batch.Put(into.family(Family::kSeals), key, canonicalBytes(entry.getSeal()));
        ++copied;
      }
      into.write(batch, /*sync=*/false);
      if (progress) progress(copied);
      from = page.getNextFromSeq();
    }

    uint64_t fromCheckpoint = 0;
    for (;;) {
      auto request = session.checkpointsRequest();
      request.setFromSeq(fromCheckpoint);
      request.setLimit(500);
      auto page = request.send().wait(ws);
      auto list = page.getCheckpoints();
      if (list.size() == 0) break;
      rocksdb::WriteBatch batch;
      for (auto cp : list) batch.Put(into.family(Family::kCheckpoints), seqKey(cp.getSeq()), canonicalBytes(cp));
      into.write(batch, /*sync=*/false);
      fromCheckpoint = list[list.size() - 1].getSeq() + 1;
    }
    return copied;
  } catch (const kj::Exception& e) {
    throw fromKjException(e);
  }
}

}  // namespace tokenledger::rpc

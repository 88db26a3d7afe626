// connection.h - one authenticated replication connection (either side).
//
// Owns the TLS stream, turns bytes into frames (FrameDecoder) for its
// Handler, queues outgoing frames, sends heartbeats and drops a peer that has
// been silent for longer than the peer timeout. It logs each new longest
// silence of a live peer above three heartbeats: the measure peer_timeout is
// chosen by (docs/failover.md, "Silent death"). After Close() (or an error)
// the handler gets exactly one OnClosed and no more calls. Once Fail() is
// called, no further frame reaches the handler, not even frames already
// buffered from the same read: nothing behind a refusal is applied.
//
// Link states are written down in the owners: primary_link.h, standby_server.h.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <asio.hpp>
#include <asio/ssl.hpp>

#include "common/config.h"
#include "repl/frame_codec.h"
#include "repl/stats.h"

namespace mailtwin::repl {

using TlsStream = asio::ssl::stream<asio::ip::tcp::socket>;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void OnFrame(Frame&& f) = 0;
    // All frames of one read have been delivered. more_pending: more bytes
    // are already waiting (the standby defers its group commit until caught up).
    virtual void OnReadDone(bool more_pending) {}
    // The write queue fell below the low watermark.
    virtual void OnDrained() {}
    virtual void OnClosed(const std::string& why) = 0;
  };

  static constexpr std::size_t kLowWater = 8u << 20;

  Connection(TlsStream stream, Handler* h, Millis heartbeat, Millis timeout);
  void Start();
  // Hands the connection to another handler (a judged newcomer becomes the
  // live session); the old one gets no more calls.
  void SetHandler(Handler* h) { handler_ = h; }
  // Fail() was called: the connection is going away, frames are ignored.
  bool failing() const { return closed_ || !fail_why_.empty(); }
  void Send(std::uint64_t seq, const Message& m);
  void Close(const std::string& why);
  // Sends an Error frame, stops reading, and closes once it is written.
  void Fail(msg::ErrorCode code, const std::string& why);
  std::size_t queued_bytes() const { return out_.size() + writing_.size(); }
  std::string peer() const { return peer_; }
  std::chrono::steady_clock::time_point last_rx() const { return last_rx_; }

 private:
  void ReadMore();
  void WriteMore();
  void Tick();

  TlsStream stream_;
  Handler* handler_;
  Millis heartbeat_, timeout_;
  asio::steady_timer timer_;
  FrameDecoder decoder_;
  std::string rbuf_;
  std::string out_, writing_;
  bool closed_ = false;
  std::string fail_why_;
  std::string peer_;
  std::chrono::steady_clock::time_point last_rx_;
  Millis longest_silence_{0};
};

}  // namespace mailtwin::repl

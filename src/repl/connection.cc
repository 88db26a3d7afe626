#include "repl/connection.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace mailtwin::repl {

Connection::Connection(TlsStream stream, Handler* h, Millis heartbeat, Millis timeout)
    : stream_(std::move(stream)),
      handler_(h),
      heartbeat_(heartbeat),
      timeout_(timeout),
      timer_(stream_.get_executor()),
      last_rx_(std::chrono::steady_clock::now()) {
  asio::error_code ec;
  auto ep = stream_.lowest_layer().remote_endpoint(ec);
  peer_ = ec ? "?" : fmt::format("{}:{}", ep.address().to_string(), ep.port());
  rbuf_.resize(256 * 1024);
}

void Connection::Start() {
  ReadMore();
  Tick();
}

void Connection::Send(std::uint64_t seq, const Message& m) {
  if (closed_) return;
  EncodeFrame(seq, m, out_);
  if (writing_.empty()) WriteMore();
}

void Connection::WriteMore() {
  if (closed_ || out_.empty()) return;
  writing_.swap(out_);
  asio::async_write(stream_, asio::buffer(writing_),
                    [self = shared_from_this()](asio::error_code ec, std::size_t) {
                      if (self->closed_) return;
                      if (ec) return self->Close(fmt::format("write failed: {}", ec.message()));
                      self->writing_.clear();
                      if (!self->fail_why_.empty() && self->out_.empty())
                        return self->Close(self->fail_why_);
                      bool was_high = self->out_.size() >= kLowWater;
                      self->WriteMore();
                      if (self->handler_ && (!was_high || self->out_.size() < kLowWater))
                        self->handler_->OnDrained();
                    });
}

void Connection::ReadMore() {
  stream_.async_read_some(
      asio::buffer(rbuf_), [self = shared_from_this()](asio::error_code ec, std::size_t n) {
        if (self->closed_ || !self->fail_why_.empty()) return;
        if (ec)
          return self->Close(ec == asio::error::eof ? "peer closed the connection"
                                                    : fmt::format("read failed: {}", ec.message()));
        auto now = std::chrono::steady_clock::now();
        auto gap = std::chrono::duration_cast<Millis>(now - self->last_rx_);
        self->last_rx_ = now;
        if (gap > self->longest_silence_ && gap > 3 * self->heartbeat_) {
          // Silences a live link really has (a lost segment waits for its
          // retransmission, and holds back every frame behind it).
          self->longest_silence_ = gap;
          spdlog::info("replication: {}: silent for {} ms, the longest on this connection "
                       "(peer_timeout {} ms)",
                       self->peer_, gap.count(), self->timeout_.count());
        }
        self->decoder_.Feed(std::string_view(self->rbuf_.data(), n));
        Frame f;
        for (;;) {
          auto st = self->decoder_.Next(f);
          if (st == FrameDecoder::Status::kNeedMore) break;
          if (st == FrameDecoder::Status::kError) {
            // Tell the peer why before hanging up; never trust the rest.
            return self->Fail(msg::ErrorCode::kProtocol,
                              "protocol error from peer: " + self->decoder_.error());
          }
          if (self->handler_) self->handler_->OnFrame(std::move(f));
          // A handler that refused this frame failed the connection: the
          // frames behind it in the same read must not be applied.
          if (self->failing()) return;
        }
        if (self->handler_) {
          asio::error_code aec;
          bool more = SSL_pending(self->stream_.native_handle()) > 0 ||
                      self->stream_.next_layer().available(aec) > 0;
          self->handler_->OnReadDone(more);
        }
        if (!self->closed_) self->ReadMore();
      });
}

void Connection::Tick() {
  if (closed_ || !fail_why_.empty()) return;
  auto silent = std::chrono::steady_clock::now() - last_rx_;
  if (silent > timeout_)
    return Close(fmt::format("peer silent for {} ms",
                             std::chrono::duration_cast<Millis>(silent).count()));
  Send(0, msg::Heartbeat{WallClockNs()});
  timer_.expires_after(heartbeat_);
  timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
    if (!ec) self->Tick();
  });
}

void Connection::Fail(msg::ErrorCode code, const std::string& why) {
  if (closed_ || !fail_why_.empty()) return;
  spdlog::warn("replication: {}: {}", peer_, why);
  Send(0, msg::Error{code, why.substr(0, kMaxName)});
  fail_why_ = why;
  // Give the Error frame a moment to leave, then hang up regardless.
  timer_.expires_after(Millis(500));
  timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
    if (!ec) self->Close(self->fail_why_);
  });
}

void Connection::Close(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  asio::error_code ec;
  stream_.lowest_layer().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  stream_.lowest_layer().close(ec);
  Handler* h = handler_;
  handler_ = nullptr;
  if (h) h->OnClosed(why);
}

}  // namespace mailtwin::repl

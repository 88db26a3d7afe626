// test_util.h - builders for Postfix-shaped queue files and temp directories.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace mailtwin::testing {

// Postfix record: type, length (7-bit groups, low first), data.
inline std::string Record(char type, const std::string& data) {
  std::string out(1, type);
  std::size_t len = data.size();
  do {
    unsigned char b = len & 0x7f;
    len >>= 7;
    if (len) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (len);
  return out + data;
}

struct QueueFile {
  std::string bytes;
  std::vector<std::size_t> rcpt_offsets;  // offset of each 'R' type byte
  std::size_t body_begin = 0, body_end = 0;
};

// A queue file shaped like cleanup's output: C, T, S, R..., M, N..., X, E.
inline QueueFile MakeQueueFile(int rcpts, std::size_t body_bytes) {
  QueueFile q;
  auto c_record = [](std::size_t seg, std::size_t data_off, int n) {
    return Record('C', fmt::format("{:15} {:15} {:15} {:15} {:15} {:15}", seg, data_off, n, 0,
                                   seg, 0));
  };
  std::string env = Record('T', "1795820330 190655") + Record('S', "sender@example.test");
  std::string head = c_record(0, 0, rcpts);  // placeholder, same length
  std::string rest = env;
  for (int i = 0; i < rcpts; ++i) {
    q.rcpt_offsets.push_back(head.size() + rest.size());
    rest += Record('R', fmt::format("user{}@dest.example.test", i));
  }
  rest += Record('M', "");
  std::size_t data_off = head.size() + rest.size();
  std::string body;
  while (body.size() < body_bytes) body += Record('N', "The quick brown fox jumps over it.");
  std::size_t xtra_off = data_off + body.size();
  q.bytes = c_record(xtra_off - data_off, data_off, rcpts) + rest + body + Record('X', "") +
            Record('E', "");
  q.body_begin = data_off;
  q.body_end = xtra_off;
  return q;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/mailtwin-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace mailtwin::testing

"""Opening a file that may be zstd-compressed, as a stream of its plain bytes.

OpenClaw compresses the transcripts of reset and cold sessions
(`<id>.jsonl.zst`, `<id>.jsonl.reset.<time>.zst`). They are read through
zstandard's streaming decompressor a chunk at a time, so memory holds a
chunk's worth, never the whole file. A file is taken as compressed by its
first bytes (zstd's magic number), not its name: a renamed archive reads as
well. A damaged archive, or one cut short, is an error, never a silently
shorter transcript.
"""

from __future__ import annotations

import io
import os
from typing import IO, TYPE_CHECKING, Final

if TYPE_CHECKING:
    import zstandard

__all__ = ["ZSTD_MAGIC", "CompressedFileError", "open_plain"]

ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
"""The first four bytes of every zstd frame."""

# Compressed bytes read at a time: JSON expands ~10x, so a chunk is a few
# hundred KiB of lines in memory.
_CHUNK: Final = 1 << 15


class CompressedFileError(Exception):
    """Raised when a compressed file cannot be decompressed (damaged, or cut short)."""


def open_plain(path: str | os.PathLike[str]) -> IO[bytes]:
    """The file's bytes, decompressed when it is a zstd archive; iterate it by lines.

    Reading a damaged archive raises `CompressedFileError`.
    """
    raw = open(path, "rb")  # noqa: SIM115 - closed with the stream returned
    try:
        if raw.peek(len(ZSTD_MAGIC))[: len(ZSTD_MAGIC)] != ZSTD_MAGIC:
            return raw
        return io.BufferedReader(_ZstdFrames(raw))
    except BaseException:
        raw.close()
        raise


class _ZstdFrames(io.RawIOBase):
    """The plain bytes of every zstd frame of a file, one after the other."""

    def __init__(self, raw: IO[bytes]) -> None:
        # Imported only for an archive: every command pays for each import.
        import zstandard

        self._zstd = zstandard
        self._raw = raw
        self._frame: zstandard.ZstdDecompressionObj = self._new_frame()
        self._in_frame = False
        """Whether the current frame has had input (an empty tail is no frame)."""
        self._pending = b""

    def _new_frame(self) -> zstandard.ZstdDecompressionObj:
        return self._zstd.ZstdDecompressor().decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = self._raw.read(_CHUNK)
            if not chunk:
                if self._in_frame:
                    raise CompressedFileError(
                        "a zstd archive cut short (its last frame ends early)"
                    )
                return 0
            self._pending = self._decompress(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _decompress(self, chunk: bytes) -> bytes:
        """The plain bytes of a chunk, across the frames it ends and begins."""
        out = []
        while chunk:
            try:
                out.append(self._frame.decompress(chunk))
            except self._zstd.ZstdError as err:
                raise CompressedFileError(f"a damaged zstd archive ({err})") from err
            self._in_frame = not self._frame.eof
            if not self._frame.eof:
                break
            chunk = self._frame.unused_data
            self._frame = self._new_frame()
        return b"".join(out)

    def close(self) -> None:
        self._raw.close()
        super().close()

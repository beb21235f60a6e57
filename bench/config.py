"""How many calls each benchmark makes (full run vs --quick)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    quick: bool
    rtt_calls: int  # run_code('print(1)') per transport (the issue asks for >= 200)
    rtt_warmup: int
    exec_calls: int  # bare docker exec baseline
    files_small: int  # 1 KiB write+read pairs
    files_big: int  # 1 MiB write+read pairs
    creates: int  # cold create_sandbox (and bare docker run) samples
    concurrency: tuple[int, ...]  # sandboxes running code at once
    rounds: int  # bursts per concurrency level (after one cold burst)
    settle_s: float  # idle time before memory is read
    state_sessions: int  # 10-call stateful sessions
    llm_calls: int  # llm-sandbox print(1) calls per variant (the issue asks for >= 50)

    @classmethod
    def full(cls) -> Config:
        return cls(
            quick=False,
            rtt_calls=300,
            rtt_warmup=20,
            exec_calls=200,
            files_small=100,
            files_big=30,
            creates=5,
            concurrency=(10, 50),
            rounds=5,
            settle_s=20.0,
            state_sessions=5,
            llm_calls=100,
        )

    @classmethod
    def quick_(cls) -> Config:
        return cls(
            quick=True,
            rtt_calls=50,
            rtt_warmup=5,
            exec_calls=30,
            files_small=20,
            files_big=5,
            creates=2,
            concurrency=(10,),
            rounds=2,
            settle_s=5.0,
            state_sessions=1,
            llm_calls=20,
        )

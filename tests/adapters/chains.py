"""A LangChain runnable with message history on an aisopod store, with a fake model."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core._api import LangChainDeprecationWarning
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from aisopod_session import AsyncSessionStore, SessionStore
from aisopod_session.adapters.langchain import AisopodChatMessageHistory


def describe(messages: Sequence[BaseMessage]) -> list[str]:
    """Messages in a few words: `type:text`."""
    return [f"{message.type}:{message.text}" for message in messages]


def history_chain(
    store: str | SessionStore | AsyncSessionStore, answers: list[str]
) -> tuple[RunnableWithMessageHistory, list[list[str]], Callable[[], None]]:
    """`prompt | model` with history in `store`; the prompts the model was shown
    (described), and a function closing the histories the chain made."""
    prompts: list[list[str]] = []
    histories: list[AisopodChatMessageHistory] = []

    def record(prompt: PromptValue) -> PromptValue:
        prompts.append(describe(prompt.to_messages()))
        return prompt

    def history(session_id: str) -> AisopodChatMessageHistory:
        made = AisopodChatMessageHistory(session_id, store)
        histories.append(made)
        return made

    def close() -> None:
        for made in histories:
            made.close()

    template = ChatPromptTemplate.from_messages(
        [
            ("system", "You are helpful."),
            MessagesPlaceholder("history"),
            ("human", "{question}"),
        ]
    )
    chain: Any = template | RunnableLambda(record) | FakeListChatModel(responses=answers)
    with warnings.catch_warnings():
        # Deprecated since langchain-core 1.3.3 in favour of LangGraph persistence,
        # and still the documented way to give a runnable a message history.
        warnings.filterwarnings(
            "ignore", "RunnableWithMessageHistory is deprecated", LangChainDeprecationWarning
        )
        with_history = RunnableWithMessageHistory(
            chain, history, input_messages_key="question", history_messages_key="history"
        )
    return with_history, prompts, close

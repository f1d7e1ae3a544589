"""Agent-framework adapters: the session store behind other frameworks' memory APIs.

Each adapter lives in a module of its own and imports its framework, which
is an optional extra; this package imports neither:

- `aisopod_session.adapters.openai_agents.AisopodSession`: the OpenAI Agents
  SDK's `Session` protocol (`pip install 'aisopod-session[openai-agents]'`).
- `aisopod_session.adapters.langchain.AisopodChatMessageHistory`: LangChain's
  `BaseChatMessageHistory` (`pip install 'aisopod-session[langchain]'`).

Both store what the framework hands them losslessly (it comes back equal, key
for key) inside native message entries, so the store's context, compaction,
search and tool-call pairing understand a conversation whichever framework
wrote it.
"""

__all__: list[str] = []

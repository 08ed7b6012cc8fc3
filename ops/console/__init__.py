"""The ops console in the browser, served by the ops endpoint under ``/console/``
(``docs/console.md``): prompts, members, tickets, queues and charts."""

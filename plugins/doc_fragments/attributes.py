# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    # Every module: what the attributes mean. Used together with one of the
    # support fragments below, which say how far a module supports each.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return a changed status prediction without modifying the target.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second run reports no change.
      - This assumes that the system the module controls or reads has not changed in between.
'''

    # Modules that only read: check mode runs them for real, they never change anything.
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details: This module never changes anything.
  diff_mode:
    support: N/A
    details: This module never changes anything.
  idempotent:
    support: full
    details: This module never changes anything.
'''

    # Declarative modules: they bring a thing to the stated state, predict that in check mode
    # and do nothing when it is already there.
    STATE = r'''
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
'''

    # Imperative steps of a migration (freeze, stream, restore): nothing to predict in check mode.
    ACTION = r'''
options: {}
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  idempotent:
    support: none
'''

    # An imperative step whose check mode only reports that it would act (nothing is touched),
    # and which acts again on every run.
    ACTION_CHECK_MODE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details: In check mode nothing is touched; the module reports that it would act.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run acts again.
'''

    # An imperative step run in stages, where a stage that finds its work already done does nothing.
    ACTION_STAGED = r'''
options: {}
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: A stage that finds its work already done does nothing.
'''

    # A configuration file brought to a state: predicted in check mode, shown with --diff.
    FILE = r'''
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
'''

# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    # Modules that only read: check mode runs them for real, they never change anything.
    INFO_MODULE = r'''
attributes:
  check_mode:
    support: full
    details: This module never changes anything.
  diff_mode:
    support: none
  idempotent:
    support: full
'''

    # Imperative steps of a migration (freeze, stream, restore): nothing to predict in check mode.
    ACTION = r'''
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  idempotent:
    support: none
'''

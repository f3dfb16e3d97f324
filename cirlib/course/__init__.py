"""The course kit: student copies of the chapters and a grader for the loss exercises.

See the book page "Teaching with this book" (``book/course.md``).
"""

from cirlib.course.grading import EXERCISES, GradeReport, grade
from cirlib.course.student_copies import (
    Exercise,
    ExerciseError,
    exercise_heading,
    solution_stub,
    student_copy,
)

__all__ = [
    "EXERCISES",
    "Exercise",
    "ExerciseError",
    "GradeReport",
    "exercise_heading",
    "grade",
    "solution_stub",
    "student_copy",
]

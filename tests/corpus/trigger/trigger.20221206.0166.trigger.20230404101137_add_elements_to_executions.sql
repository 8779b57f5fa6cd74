-- AlterTable
ALTER TABLE "Execution" ADD COLUMN     "elements" JSONB;
